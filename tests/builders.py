"""Builders the tests share: typed events and profiles, the Delta writers that store them, and a
logistic regression with hand-set weights (registered in MLflow by conftest's ``registered``).

The model's weights and the users A, B, C and LAPSED are set by hand, so every probability,
contribution and reason that the scoring, alerts and report tests expect is computed on paper.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DateType, IntegerType, StringType, StructField, StructType

from churn_spark import tables
from churn_spark.btyd import BGNBD
from churn_spark.config import Config
from churn_spark.contract import RECORD, SOURCE_FILE, SPARK_TYPES, validate_events
from churn_spark.features import catalogue
from churn_spark.generate import GenerateSpec, generate
from churn_spark.train.bundle import BOOSTER, Bundle, BoosterModel
from churn_spark.train.model import build_model
from churn_spark.train.preprocess import Preprocessing, raw_arrays
from churn_spark.train.tracking import register_bundle

# --- typed events and profiles, and the Delta writer that stores them ----------------------------

EVENT_COLUMNS = ("user_id string, event_time timestamp, event_type string, session_id string, "
                 "product_id string, category string, channel string, price double, quantity int, "
                 "dwell_seconds double, rating int, review_text string")
USER_COLUMNS = ("user_id string, signup_time timestamp, gender string, age int, region string, "
                "membership_level string")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def make_events(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Events as the contract types them, one tuple a row in ``EVENT_COLUMNS`` order."""
    return spark.createDataFrame(rows, EVENT_COLUMNS)


def make_users(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, USER_COLUMNS)


def event(user: str, when: str | dt.datetime, kind: str = "purchase", price: float = 1.0) -> tuple:
    """One event row (``EVENT_COLUMNS``) in a session of its own; a purchase costs ``price``, quantity 1."""
    when = at(when) if isinstance(when, str) else when
    bought = kind == "purchase"
    return (user, when, kind, f"s-{user}-{when}", "p1", "A", "app", price if bought else None,
            1 if bought else None, None, None, None)


def profile(user: str) -> tuple:
    """A profile row (``USER_COLUMNS``): signed up on 2026-01-01, female, 30, UK, gold."""
    return (user, dt.datetime(2026, 1, 1), "female", 30, "UK", "gold")


def generated(spark: SparkSession, spec: GenerateSpec) -> tuple[DataFrame, DataFrame]:
    """Generated events and profiles, typed: the events that pass every contract rule, once each,
    and the profiles that carry a user id."""
    raw_events, raw_users = generate(spark, spec)
    rows = raw_events.select(*raw_events.columns, F.lit("").alias(RECORD), F.lit("").alias(SOURCE_FILE))
    events = validate_events(rows, dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)).where(
        F.size("reasons") == 0).dropDuplicates(["event_id"]).drop("reasons", RECORD, SOURCE_FILE)
    users = raw_users.where("user_id != ''").select(
        "user_id", F.col("signup_time").cast("timestamp"), "gender", F.col("age").cast("int"), "region",
        "membership_level")
    return events, users


def write_jsonl(path: Path, rows: list[dict], extra_lines: tuple[str, ...] = ()) -> str:
    """A landing file of JSON lines (one a row, then ``extra_lines`` as they are); its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([json.dumps(r, ensure_ascii=False) for r in rows] + list(extra_lines)) + "\n")
    return str(path)


def store_events(spark: SparkSession, config: Config, events: DataFrame | list[tuple],
                 users: DataFrame | list[tuple] | None = None) -> None:
    """Append typed events (and profiles), frames or rows, to the lakehouse's events (and users)
    tables as ingest stores them: an event id from the user, time and type, source ``test``."""
    events = make_events(spark, events) if isinstance(events, list) else events
    users = make_users(spark, users) if isinstance(users, list) else users
    stored = events.select(
        F.sha2(F.concat_ws("|", "user_id", F.col("event_time").cast("string"), "event_type"), 256).alias("event_id"),
        *[c for c in tables.SPECS["events"].schema.fieldNames()
          if c in events.columns and c != "event_id"],
        F.lit("test").alias("source"), F.current_timestamp().alias("ingested_at"),
        F.to_date("event_time").alias("event_date"))
    tables.ensure_table(spark, config, "events")
    tables.append(stored.select(*tables.SPECS["events"].schema.fieldNames()), config, "events")
    if users is not None:
        tables.ensure_table(spark, config, "users")
        tables.append(users.select("*", F.lit("test").alias("source"), F.current_timestamp().alias("updated_at")),
                      config, "users")


def store_dates(spark: SparkSession, config: Config, name: str, rows: list[tuple], schema: str | StructType,
                days: list[dt.date]) -> None:
    """Replace the ``days`` partitions of table ``name`` with ``rows``, through the table owner.

    ``rows`` hold the columns a test cares about; every other column of the table gets the
    feature's "none" value (the value of a user with no events) or, outside the feature
    catalogue, null: the rows the jobs would store.
    """
    frame = spark.createDataFrame(rows, schema)
    nones = {f.name: f.none for f in catalogue(config.features)}
    rest = [F.lit(nones.get(f.name)).cast(f.dataType).alias(f.name)
            for f in tables.table_spec(config, name).schema.fields if f.name not in frame.columns]
    tables.replace_dates(frame.select("*", *rest), config, name, days)


# --- a small training_set of every catalogue feature ---------------------------------------------

# 35 days apart, horizon 30: train 01-01 and 02-05, validation 03-12, test 04-16.
SMALL_SNAPSHOTS = [dt.date(2026, 1, 1) + dt.timedelta(days=35 * k) for k in range(4)]


def write_small_training_set(spark: SparkSession, config: Config, labels: dict[dt.date, list[int]],
                             signal: str | None = None) -> None:
    """A training_set of every catalogue feature (seeded random values in [0, 30)), one row per
    label; with ``signal``, that numeric feature is 30 more for a churner (a separable set)."""
    features = catalogue(config.features)
    schema = StructType([StructField("user_id", StringType()), StructField("snapshot_date", DateType()),
                         StructField("label", IntegerType()),
                         *[StructField(f.name, SPARK_TYPES[f.dtype]) for f in features]])
    random = np.random.default_rng(7)
    values = {"double": lambda: float(random.uniform(0, 30)), "int": lambda: int(random.integers(0, 2)),
              "string": lambda: str(random.choice(["gold", "silver"]))}

    def value(feature: str, dtype: str, label: int) -> object:
        drawn = values[dtype]()
        return drawn + 30.0 * label if feature == signal else drawn

    rows = [(f"u{k}", day, label, *[value(f.name, f.dtype, label) for f in features])
            for day, day_labels in labels.items() for k, label in enumerate(day_labels)]
    store_dates(spark, config, "training_set", rows, schema, list(labels))


def store_legacy(frame: DataFrame, config: Config, name: str) -> None:
    """Write ``frame`` as table ``name`` the way another version of the project could have left it
    (other columns than the owner declares): plain Delta, past the owner's schema check."""
    frame.write.format("delta").mode("overwrite").partitionBy("snapshot_date").save(config.table(name))


# --- a logistic regression with hand-set weights, and the users it scores -----------------------

T1, T2 = dt.date(2026, 3, 1), dt.date(2026, 3, 15)
PREP = Preprocessing(
    numeric={"days_since_last_purchase": (20.0, 10.0), "purchases_trend_30d": (0.0, 0.5), "spend_30d": (100.0, 50.0)},
    categorical={"membership_level": ["gold", "silver"]},
)
# PREP and BG/NBD inputs from hand parameters (r = alpha = a = 1, b = 2, horizon 4 days; see test_btyd)
BGNBD_PREP = Preprocessing(
    numeric={**PREP.numeric, "bgnbd_p_alive": (0.5, 0.25), "bgnbd_expected_purchases": (1.0, 0.5),
             "bgnbd_p_no_purchase": (0.5, 0.25)},
    categorical=PREP.categorical,
    bgnbd={"model": BGNBD(r=1.0, alpha=1.0, a=1.0, b=2.0).to_dict(), "horizon": 4, "inputs": True},
)
FEATURE_COLUMNS = ("user_id string, snapshot_date date, days_since_last_purchase double, purchase_seen int, "
                   "purchases_trend_30d double, spend_30d double, spend_90d double, membership_level string")
# logit = -1 + 1.0 z(days) - 2.0 z(trend) - 0.5 z(spend) + {gold: 0.4, silver: -0.4} (mean of known: 0)
A = (50.0, 1, -0.6, 50.0, 100.0, "gold")      # 3 + 2.4 + 0.5 + 0.4 - 1 = 5.3
B = (10.0, 1, 0.2, 250.0, 200.0, "silver")    # -1 - 0.8 - 1.5 - 0.4 - 1 = -4.7
C = (20.0, 1, 0.0, 100.0, 40.0, "gold")       # 0.4 - 1 = -0.6
LAPSED = (180.0, 0, 0.0, 0.0, 0.0, "gold")    # no purchase in the lookback: outside the population


def lr_bundle(prep: Preprocessing = PREP, weights: tuple[float, ...] = (1.0, -2.0, -0.5),
              category: tuple[float, ...] = (0.0, 0.4, -0.4), bias: float = -1.0) -> Bundle:
    """A logistic regression with hand-set weights (``category``: unknown slot first)."""
    network = build_model("lr", len(prep.numeric), prep.cardinalities(), torch.device("cpu"))
    with torch.no_grad():
        network.linear.weight.copy_(torch.tensor([list(weights)]))
        network.linear.bias.fill_(bias)
        network.category_weights[0].weight.copy_(torch.tensor([[w] for w in category]))
    return Bundle("lr", network.state_dict(), prep, threshold=0.5)


def gru_bundle(prep: Preprocessing = PREP, days: int = 5, channels: tuple[str, ...] = ("purchases", "spend"),
               seed: int = 3) -> Bundle:
    """A sequence model (a GRU beside ``prep``'s features) with seeded random weights, over the
    last ``days`` days of ``channels``."""
    network = build_model("gru", len(prep.numeric), prep.cardinalities(), torch.device("cpu"), seed=seed,
                          days=days, channels=len(channels))
    return Bundle("gru", network.state_dict(), prep, threshold=0.5,
                  sequence={"days": days, "channels": list(channels)})


def booster_bundle(prep: Preprocessing = PREP) -> Bundle:
    """A real LightGBM booster over ``PREP``'s features, trained on 400 seeded rows where churn
    is exactly "last purchase more than 30 days ago" (the other features are noise)."""
    random = np.random.default_rng(3)
    rows = pd.DataFrame({"days_since_last_purchase": random.uniform(0, 60, 400),
                         "purchases_trend_30d": random.uniform(-1, 1, 400), "spend_30d": random.uniform(0, 300, 400),
                         "membership_level": random.choice(["gold", "silver"], 400)})
    booster = lgb.train({"objective": "binary", "num_leaves": 4, "min_data_in_leaf": 10, "learning_rate": 0.3,
                         "verbose": -1, "seed": 0, "deterministic": True},
                        lgb.Dataset(BoosterModel.inputs(*raw_arrays(rows, prep)),
                                    (rows["days_since_last_purchase"] > 30).astype(int).to_numpy(),
                                    feature_name=[*prep.numeric, *prep.categorical], categorical_feature=[3]),
                        num_boost_round=20)
    return Bundle(BOOSTER, {"model": booster.model_to_string()}, prep, threshold=0.5)


def register(config: Config, bundle: Bundle, path: Path) -> str:
    """Save ``bundle`` to ``path`` and register it in ``config``'s MLflow registry; its version."""
    bundle.save(str(path))
    return register_bundle(config, path)


def frame(rows: list[tuple]) -> pd.DataFrame:
    """Feature rows (A, B, C, LAPSED, ...) as the pandas frame ``Scorer.predict`` takes."""
    return pd.DataFrame(rows, columns=["days_since_last_purchase", "purchase_seen", "purchases_trend_30d",
                                       "spend_30d", "spend_90d", "membership_level"])


def store_features(spark: SparkSession, config: Config, day: dt.date, users: dict[str, tuple]) -> None:
    """The user_features partition of ``day``: one row per user id, its feature tuple (A, B, ...)."""
    store_dates(spark, config, "user_features", [(user, day, *values) for user, values in users.items()],
                FEATURE_COLUMNS, [day])


def scores_at(spark: SparkSession, config: Config, day: dt.date) -> pd.DataFrame:
    return (tables.read_table(spark, config, "churn_scores").where(F.col("snapshot_date") == F.lit(day))
            .drop("scored_at").toPandas().sort_values("user_id").reset_index(drop=True))


def check_scoring_paths(spark: SparkSession, config: Config, day: dt.date, version: str, expected: pd.DataFrame,
                        rtol: float = 1e-12) -> None:
    """The scoring job at ``day`` with model ``version`` on both paths (reasons through the
    pandas UDF, probabilities only through mapInArrow) gives ``expected`` (``Scorer.predict``'s
    output for the same users, in user order): its probabilities and, with reasons, its reasons."""
    from churn_spark.score import run_scoring

    for reasons in (3, 0):
        settings = config.model_copy(update={"score": config.score.model_copy(update={"reasons": reasons})})
        assert run_scoring(spark, settings, day, version).model_version == version
        got = scores_at(spark, settings, day)
        np.testing.assert_allclose(got["churn_probability"], expected["churn_probability"], rtol=rtol)
        if reasons:
            assert [list(r) for r in got["reason_features"]] == expected["reason_features"].tolist()
            assert [list(r) for r in got["top_reasons"]] == expected["top_reasons"].tolist()
