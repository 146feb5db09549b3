"""Full-population scoring: probabilities, risk tiers and reasons for every user known at T.

``Scorer.predict`` is the plain function (pandas in, pandas out, no Spark); ``score_users``
wraps it in an iterator pandas UDF that builds the ``Scorer`` once per task, so each task
deserialises the model once and feeds it Arrow batches; users never travel to the driver.
``run_scoring`` is the job: registered model, features at T (the stored partition of
``user_features`` or computed from the events), checks, scores, tiers, and the ``churn_scores``
partition of T replaced in one transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import reduce

import numpy as np
import pandas as pd
import torch
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from churn_spark import drift, tables
from churn_spark.config import Config, FeaturesConfig, LabelsConfig, ScoreConfig
from churn_spark.errors import InputError
from churn_spark.explain import ReasonWriter, top_reasons
from churn_spark.features import KEYS, catalogue
from churn_spark.labels import snapshot_rows
from churn_spark.snapshots import features_at, read_inputs
from churn_spark.train.bundle import Bundle
from churn_spark.train.sequence import SEQUENCE, attach
from churn_spark.train.preprocess import CATEGORIES, NUMERIC, derive, input_arrays, raw_arrays, with_derived

log = logging.getLogger(__name__)

TIERS = ("high", "medium", "low", "lapsed")
_RECENCY_TYPES = ("view", "cart", "purchase", "review", "service")
PREDICTION = T.StructType([
    T.StructField("churn_probability", T.DoubleType()),
    T.StructField("top_reasons", T.ArrayType(T.StringType())),
    T.StructField("reason_features", T.ArrayType(T.StringType())),
])
_NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


@dataclass
class Scorer:
    """A registered model of any kind ready to score raw feature rows, with reasons.

    Parameters
    ----------
    bundle
        The trained model (a network or a booster), its preprocessing state, feature list and
        calibration.
    features
        The feature settings the model was trained with (reason texts read the catalogue).
    reasons
        How many reasons to give per user (at most; only features that push the score up);
        0 for probabilities only.
    """

    bundle: Bundle
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    reasons: int = 3

    def __post_init__(self) -> None:
        self.model = self.bundle.model()
        self.names = self.bundle.features
        self.writer = ReasonWriter(catalogue(self.features), self.bundle.preprocessing, self.features.history_days)

    def predict(self, features: pd.DataFrame) -> pd.DataFrame:
        """Churn probability and the top reasons of each row of raw features.

        Returns
        -------
        One row per input row, in order: ``churn_probability`` (calibrated), ``top_reasons`` (readable text,
        strongest first) and ``reason_features`` (the features behind them). A value that is
        missing or not finite never stops the batch: a network reads it at its bound (see
        ``preprocess.standardise``), a booster as missing, and it is never a reason.
        """
        features = derive(features, self.bundle.preprocessing)
        numeric, categories = raw_arrays(features, self.bundle.preprocessing)
        sequence = self.bundle.sequence_input(features)  # a sequence model's daily activity
        if self.reasons == 0:  # probabilities only: one forward pass, no contributions
            logits = self.model.logits(numeric, categories, **sequence)
            chosen: list[list[int]] = [[] for _ in range(len(features))]
        else:
            logits, contributions = self.model.contributions(numeric, categories, **sequence)
            contributions = np.where(self.writer.explainable(features), contributions, 0.0)
            chosen = top_reasons(contributions, self.reasons, self.writer.groups)
        values = [features[name].to_numpy() for name in self.names]
        texts = [[self.writer.text(self.names[c], values[c][row]) for c in columns]
                 for row, columns in enumerate(chosen)]
        return pd.DataFrame({
            "churn_probability": self.bundle.probabilities(logits),
            "top_reasons": texts,
            "reason_features": [[self.names[c] for c in columns] for columns in chosen],
        })


def score_users(features: DataFrame, bundle: Bundle, settings: FeaturesConfig, reasons: int) -> DataFrame:
    """``features`` with the model's ``churn_probability``, ``top_reasons`` and ``reason_features``.

    A pure transform: the model travels in the UDF's closure as bytes and is loaded once per
    task (the iterator form), then applied to each Arrow batch of that task.
    """
    payload, names = bundle.to_bytes(), bundle.inputs

    @F.pandas_udf(PREDICTION)  # type: ignore[call-overload]
    def _predict(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import TaskContext

        context = TaskContext.get()
        torch.set_num_threads(max(1, context.cpus() if context else 1))  # one task, its own cores
        scorer = Scorer(Bundle.from_bytes(payload), settings, reasons)
        for batch in batches:
            yield scorer.predict(batch)

    predicted = features.withColumn("_prediction", _predict(F.struct(*[F.col(n) for n in names])))
    return predicted.select("*", "_prediction.*").drop("_prediction")


def score_probabilities(features: DataFrame, bundle: Bundle, keep: list[str | Column]) -> DataFrame:
    """The ``keep`` columns of ``features`` and the model's ``churn_probability``: no reasons.

    Two array columns (``preprocess.input_arrays``) cross to Python instead of one per
    feature; each Arrow batch's arrays are read as numpy matrices without going through
    pandas, and the model (of any kind) runs once per batch. The probabilities are those of
    ``Scorer(bundle, reasons=0).predict``.
    """
    import pyarrow as pa

    payload, kept = bundle.to_bytes(), features.select(*keep).schema
    schema = T.StructType([*kept.fields, T.StructField("churn_probability", T.DoubleType())])
    numeric_width, categories_width = len(bundle.preprocessing.numeric), len(bundle.preprocessing.categorical)
    sequence_width = bundle.sequence["days"] * len(bundle.sequence["channels"]) if bundle.sequence else 0

    def matrix(column: pa.ChunkedArray | pa.Array, width: int) -> np.ndarray:
        return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), width)

    def _predict(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        torch.set_num_threads(max(1, context.cpus() if context else 1))
        loaded = Bundle.from_bytes(payload)
        model = loaded.model()
        for batch in batches:
            numeric = matrix(batch.column(NUMERIC), numeric_width).astype(np.float64)
            categories = matrix(batch.column(CATEGORIES), categories_width).astype(np.int64)
            sequence = ({"sequence": matrix(batch.column(SEQUENCE), sequence_width).astype(np.float32)}
                        if sequence_width else {})
            probability = loaded.probabilities(model.logits(numeric, categories, **sequence))
            columns = [batch.column(f.name) for f in kept.fields]
            yield pa.RecordBatch.from_arrays([*columns, pa.array(probability)], names=schema.fieldNames())

    inputs = with_derived(features, bundle.preprocessing).select(
        *keep, *input_arrays(bundle.preprocessing), *([SEQUENCE] if sequence_width else []))
    return inputs.mapInArrow(_predict, schema)


def tier_column(probability: Column, active: Column, high: float, medium: float) -> Column:
    """``lapsed`` outside the model's population; else ``high`` at or above the ``high``
    cut-off, ``medium`` at or above ``medium``, ``low`` below."""
    return (F.when(~active, "lapsed").when(probability >= F.lit(high), "high")
            .when(probability >= F.lit(medium), "medium").otherwise("low"))


def in_population(labels: LabelsConfig) -> Column:
    """Whether a feature row belongs to the population the model learnt from.

    The feature-row form of ``labels.label_aggregates``' eligibility: a purchase (or, with
    ``any_activity``, a view, cart, purchase, review or service contact) in the lookback window
    before T. Users outside it are still scored, but tiered ``lapsed``: they have already gone
    quiet, and the model never saw anyone like them.
    """
    types = ("purchase",) if labels.eligibility == "purchase" else _RECENCY_TYPES
    return reduce(lambda a, b: a | b, [(F.col(f"{t}_seen") == 1)
                                       & (F.col(f"days_since_last_{t}") <= labels.lookback_days) for t in types])


def check_compatible(bundle: Bundle, schema: T.StructType, where: str) -> None:
    """Refuse, in one line, a model whose inputs the features at hand cannot feed.

    Raises
    ------
    InputError
        A feature the model needs is missing or of the wrong kind, or the model (a network's
        weights, a booster's features) does not fit its own preprocessing state.
    """
    label = f"model version {bundle.version or '?'}"
    types = {f.name: f.dataType for f in schema.fields}
    missing = [name for name in bundle.inputs if name not in types]
    if missing:
        raise InputError(f"{label} does not fit {where}: missing feature(s) {', '.join(missing)}")
    categorical = bundle.preprocessing.categorical

    def fits(name: str) -> bool:
        if name == SEQUENCE:
            return isinstance(types[name], T.ArrayType) and isinstance(types[name].elementType, _NUMERIC_TYPES)
        return isinstance(types[name], T.StringType if name in categorical else _NUMERIC_TYPES)

    wrong = [name for name in bundle.inputs if not fits(name)]
    if wrong:
        raise InputError(f"{label} does not fit {where}: feature(s) of another type: {', '.join(wrong)}")
    try:
        bundle.model()
    except (RuntimeError, KeyError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{label}: its weights do not fit its preprocessing state ({first})") from None


@dataclass(frozen=True)
class ScoreResult:
    """What a scoring run wrote."""

    snapshot_date: dt.date
    model_version: str
    users: int
    cuts: dict[str, float]
    drift: list[dict] = field(default_factory=list)  # drift_metrics rows: each feature's, the score's last

    def drift_line(self) -> str:
        """The drift in one line: the score's PSI and the features past the usual alarm (PSI > 0.25)."""
        if not self.drift:
            return "drift_metrics: none (the model holds no drift reference: trained by an older churn-spark)"
        score = self.drift[-1]
        moved = [row["feature"] for row in self.drift[:-1] if row["psi"] > 0.25]
        return (f"drift_metrics: {len(self.drift) - 1} features; score PSI {score['psi']:.3f}, JS distance "
                f"{score['js_distance']:.3f}; features with PSI > 0.25: {', '.join(moved) or 'none'}")


def run_scoring(spark: SparkSession, config: Config, as_of: dt.date, version: str | None = None) -> ScoreResult:
    """Score every user known at ``as_of``; replace that date's partition of ``churn_scores``.

    Raises
    ------
    InputError
        Before anything is written: no such model version, a model that does not fit the
        features, or nobody to score.
    """
    from churn_spark.train.tracking import load_registered

    version, bundle = load_registered(config, version)
    features, where = features_on(spark, config, as_of)
    features = with_model_inputs(spark, config, features, bundle)
    check_compatible(bundle, features.schema, where)
    features = features.persist()
    try:
        users = features.count()
        if users == 0:
            raise InputError(f"{where}: no users known at {as_of}; nothing to score")
        rows = scored(features, bundle, config).persist()
        cuts = _cuts(rows.where("active"), config.score)
        frame = rows.select(
            *KEYS, "churn_probability",
            tier_column(F.col("churn_probability"), F.col("active"), cuts["high"], cuts["medium"]).alias("risk_tier"),
            "top_reasons", "reason_features", "spend_90d", F.lit(version).alias("model_version"),
            F.lit(dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)).cast("timestamp").alias("scored_at"))
        tables.replace_dates(frame, config, "churn_scores", [as_of])
        measured = _drift(features, rows, bundle, version, as_of, config)
        rows.unpersist()
    finally:
        features.unpersist()
    log.info("scored %d users at %s with model version %s", users, as_of, version)
    return ScoreResult(as_of, version, users, cuts, measured)


def _drift(features: DataFrame, rows: DataFrame, bundle: Bundle, version: str, as_of: dt.date,
           config: Config) -> list[dict]:
    """Replace ``drift_metrics`` at ``as_of`` with the scored population's drift from the model's
    reference (the users in the model's population, with their probabilities); nothing where the
    model holds no reference."""
    if bundle.reference is None:
        log.info("model version %s holds no drift reference: no drift_metrics at %s", version, as_of)
        return []
    population = features.join(rows.where("active").select(*KEYS, "churn_probability"), list(KEYS))
    measured = drift.measure(population, bundle.reference)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    frame = population.sparkSession.createDataFrame(
        [(as_of, version, m["feature"], m["psi"], m["js_distance"], m["rows"], now) for m in measured],
        tables.SPECS["drift_metrics"].schema)
    tables.replace_dates(frame, config, "drift_metrics", [as_of])
    return measured


def with_model_inputs(spark: SparkSession, config: Config, features: DataFrame, bundle: Bundle) -> DataFrame:
    """``features`` with what the model reads beside them: a sequence model's daily activity
    before T (``train.sequence.attach``, from the ``user_daily`` rollup); else ``features``."""
    if not bundle.sequence:
        return features
    return attach(features, tables.read_table(spark, config, "user_daily"), bundle.sequence["days"],
                  bundle.sequence["channels"])


def scored(features: DataFrame, bundle: Bundle, config: Config) -> DataFrame:
    """Keys, probability, whether in the population, reasons and 90-day spend of every user."""
    facts = [in_population(config.labels).alias("active"), _spend(features.columns)]
    if config.score.reasons == 0:  # probabilities only: the array path, no pandas
        nothing = F.array().cast("array<string>")
        return score_probabilities(features, bundle, [*KEYS, *facts]).select(
            *KEYS, "churn_probability", "active", nothing.alias("top_reasons"),
            nothing.alias("reason_features"), "spend_90d")
    return score_users(features, bundle, config.features, config.score.reasons).select(
        *KEYS, "churn_probability", facts[0], "top_reasons", "reason_features", facts[1])


def _spend(columns: list[str]) -> Column:
    """Last-90-day spend, for revenue at risk (null where the 90-day window is not configured)."""
    return (F.col("spend_90d") if "spend_90d" in columns else F.lit(None)).cast("double").alias("spend_90d")


def features_on(spark: SparkSession, config: Config, as_of: dt.date) -> tuple[DataFrame, str]:
    """The stored ``user_features`` partition of ``as_of`` when there is one, else folded from
    the ``user_daily`` rollup (brought up to date first)."""
    if tables.table_exists(spark, config, "user_features"):
        stored = tables.read_table(spark, config, "user_features").where(F.col("snapshot_date") == F.lit(as_of))
        if not stored.isEmpty():
            return stored, f"{config.table('user_features')} at {as_of}"
    _check_window(read_inputs(spark, config)[0], as_of, config.features.history_days)
    return features_at(spark, config, [as_of]), f"the features computed at {as_of} (from the user_daily rollup)"


def _check_window(events: DataFrame, as_of: dt.date, history_days: int) -> None:
    """Refuse a date whose feature window holds no event: every user would be scored "lapsed"
    from the none values alone, with tier cut-offs of 1.0.

    Raises
    ------
    InputError
        Naming the window and the dates the events span.
    """
    window = snapshot_rows(events.select("event_time", "event_date"), [as_of], history_days)
    if not window.where("before_t").isEmpty():
        return
    first, last = events.agg(F.min("event_date"), F.max("event_date")).first()
    start = as_of - dt.timedelta(days=history_days)
    span = f"the events span {first} to {last}" if first is not None else "the events table is empty"
    raise InputError(f"score at {as_of}: no events in its feature window [{start}, {as_of}) "
                     f"({span}); nothing to score")


def _cuts(scored: DataFrame, settings: ScoreConfig) -> dict[str, float]:
    """Tier cut-offs: the configured probabilities, or quantiles of this population's scores."""
    if settings.tiers_by == "probability":
        return {"high": settings.high, "medium": settings.medium}
    cuts = scored.agg(F.percentile_approx("churn_probability", [settings.medium, settings.high], 10_000)).first()[0]
    if cuts is None:  # nobody in the population: everyone is lapsed
        return {"high": 1.0, "medium": 1.0}
    return {"high": float(cuts[1]), "medium": float(cuts[0])}
