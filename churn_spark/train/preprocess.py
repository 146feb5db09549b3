"""Preprocessing fitted on the training split in Spark: standardisation, category vocabularies,
and the BG/NBD model whose outputs are inputs of every model.

``fit`` runs one aggregation (means and standard deviations of the numeric features, the
distinct values of the categorical ones) on the training rows only; ``apply`` turns any split
into model inputs with Spark expressions, so that validation and test rows never inform the
scaling. The fitted state is plain data (``to_dict`` / ``from_dict``) for checkpoints and the
model registry.

With a horizon, ``fit`` also fits BG/NBD (``churn_spark.btyd``) on the training rows' purchase
summaries, and three numeric inputs are derived from each row's summaries by it
(``BGNBD_INPUTS``: P(alive) at T, expected purchases and P(no purchase) in the horizon). They are
inputs, not catalogue features: a row's own features before T and parameters from the training
split, so no later event reaches them. ``derive`` (pandas) and ``with_derived`` (Spark, the same
numpy code in a pandas UDF) add them wherever rows become model inputs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from churn_spark import btyd

log = logging.getLogger(__name__)
BGNBD_INPUTS = ("bgnbd_p_alive", "bgnbd_expected_purchases", "bgnbd_p_no_purchase")  # derived, last numerics
UNKNOWN = 0  # index of a category not seen in training
Z_LIMIT = 1e3  # standardised inputs are clipped to +-Z_LIMIT (see ``to_arrays``)


@dataclass(frozen=True)
class Preprocessing:
    """Fitted state: per numeric feature its mean and std; per categorical one its vocabulary."""

    numeric: dict[str, tuple[float, float]]
    categorical: dict[str, list[str]]
    bgnbd: dict | None = None  # {"model": BGNBD.to_dict(), "horizon": days, "inputs": whether BGNBD_INPUTS are}

    def cardinalities(self) -> list[int]:
        """Embedding sizes: each vocabulary plus the unknown slot."""
        return [len(values) + 1 for values in self.categorical.values()]

    def derived(self) -> tuple[str, ...]:
        """The numeric inputs derived from other columns (none without BG/NBD)."""
        return BGNBD_INPUTS if self.bgnbd and self.bgnbd["inputs"] else ()

    def columns(self) -> list[str]:
        """The feature columns a row must hold to become model inputs."""
        summaries = [c for c in btyd.SUMMARIES if c not in self.numeric] if self.derived() else []
        return [*(c for c in self.numeric if c not in self.derived()), *summaries, *self.categorical]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> Preprocessing:
        return cls({k: (float(m), float(s)) for k, (m, s) in state["numeric"].items()},
                   {k: list(v) for k, v in state["categorical"].items()}, state.get("bgnbd"))


def bgnbd_inputs(state: dict, summaries: pd.DataFrame) -> pd.DataFrame:
    """``BGNBD_INPUTS`` of rows holding ``btyd.SUMMARIES``, by the fitted ``state``."""
    model, horizon = btyd.BGNBD.from_dict(state["model"]), float(state["horizon"])
    x, t_x, age = (summaries[c].astype("float64").to_numpy() for c in btyd.SUMMARIES)
    return pd.DataFrame({"bgnbd_p_alive": model.p_alive(x, t_x, age),
                         "bgnbd_expected_purchases": model.expected_purchases(horizon, x, t_x, age),
                         "bgnbd_p_no_purchase": model.p_no_purchase(horizon, x, t_x, age)}, index=summaries.index)


def derive(frame: pd.DataFrame, prep: Preprocessing) -> pd.DataFrame:
    """``frame`` with the derived inputs added (itself where there are none, or they are there)."""
    if not prep.derived() or set(prep.derived()) <= set(frame.columns):
        return frame
    return pd.concat([frame, bgnbd_inputs(prep.bgnbd, frame)], axis=1)


def with_derived(frame: DataFrame, prep: Preprocessing) -> DataFrame:
    """``frame`` (Spark) with the derived inputs added, by ``bgnbd_inputs`` in a pandas UDF."""
    if not prep.derived():
        return frame
    state = prep.bgnbd

    @F.pandas_udf(", ".join(f"{c} double" for c in BGNBD_INPUTS))  # type: ignore[call-overload]
    def _inputs(x: pd.Series, t_x: pd.Series, age: pd.Series) -> pd.DataFrame:
        return bgnbd_inputs(state, pd.DataFrame(dict(zip(btyd.SUMMARIES, (x, t_x, age), strict=True))))

    derived = _inputs(*[F.col(c) for c in btyd.SUMMARIES])
    return frame.withColumn("_bgnbd", derived).select(
        *frame.columns, *[F.col(f"_bgnbd.{c}").alias(c) for c in BGNBD_INPUTS])


def to_arrays(frame: pd.DataFrame, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """The same inputs as ``apply``, from raw feature rows in pandas (for scoring and evaluation)."""
    numeric, categories = raw_arrays(frame, prep)
    return standardise(numeric, prep), categories


def raw_arrays(frame: pd.DataFrame, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """The numerics as they are (float64, one column per ``prep.numeric`` feature) and the
    category indices (int64): what ``input_arrays`` gives in Spark, and what every model kind
    reads (``Bundle.model``)."""
    frame = derive(frame, prep)
    numeric = (np.column_stack([frame[c].astype("float64").to_numpy() for c in prep.numeric])
               if prep.numeric else np.zeros((len(frame), 0)))
    categories = np.column_stack([
        frame[c].map({v: i + 1 for i, v in enumerate(values)}).fillna(UNKNOWN).to_numpy(np.int64)
        for c, values in prep.categorical.items()]) if prep.categorical else np.zeros((len(frame), 0), np.int64)
    return numeric, categories


def standardise(values: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """Raw numerics (one row per user, one column per ``prep.numeric`` feature, float64) as
    the model reads them: standardised, as float32.

    Standardised values are finite, so that one absurd row cannot turn a batch's logits into
    NaN: a missing value (NaN) reads as the training mean (0), and values are clipped to
    +-``Z_LIMIT`` standard deviations (infinities included), far beyond any real one.
    """
    means = np.array([mean for mean, _ in prep.numeric.values()], dtype=np.float64)
    stds = np.array([std if std > 0 else 1.0 for _, std in prep.numeric.values()], dtype=np.float64)
    return np.clip(np.nan_to_num((values - means) / stds, nan=0.0), -Z_LIMIT, Z_LIMIT).astype(np.float32)


def fit(train: DataFrame, numeric: list[str], categorical: list[str], horizon: int | None = None,
        bgnbd_inputs: bool = True) -> Preprocessing:
    """Fit on the training rows: one Spark aggregation, a few numbers per feature back; with a
    ``horizon`` (days), BG/NBD on their purchase summaries too (three numbers a row to the
    driver), whose outputs become inputs with ``bgnbd_inputs`` (left out, with a warning, where
    it cannot be fitted).

    Raises
    ------
    ValueError
        If a named column is missing or the training rows are empty.
    """
    missing = sorted(set(numeric + categorical) - set(train.columns))
    if missing:
        raise ValueError(f"fit: columns not in the training rows: {', '.join(missing)}")
    stats = train.agg(
        *[F.avg(c).alias(f"m_{c}") for c in numeric],
        *[F.stddev_pop(c).alias(f"s_{c}") for c in numeric],
        *[F.array_sort(F.collect_set(c)).alias(f"v_{c}") for c in categorical],
        F.count(F.lit(1)).alias("_rows"),
    ).first()
    if not stats["_rows"]:
        raise ValueError("fit: the training rows are empty")
    prep = Preprocessing(
        numeric={c: (float(stats[f"m_{c}"]), float(stats[f"s_{c}"] or 0.0)) for c in numeric},
        categorical={c: list(stats[f"v_{c}"]) for c in categorical},
    )
    return prep if horizon is None else _with_bgnbd(prep, train, horizon, bgnbd_inputs)


def _with_bgnbd(prep: Preprocessing, train: DataFrame, horizon: int, inputs: bool) -> Preprocessing:
    summaries = train.select(*btyd.SUMMARIES).toPandas()
    try:
        model = btyd.fit(*(summaries[c].to_numpy(float) for c in btyd.SUMMARIES))
    except ValueError as error:
        log.warning("no BG/NBD inputs: %s", error)
        return prep
    log.info("BG/NBD on %d training rows: %s", len(summaries), model)
    state = {"model": model.to_dict(), "horizon": horizon, "inputs": inputs}
    if not inputs:
        return Preprocessing(prep.numeric, prep.categorical, state)
    derived = bgnbd_inputs(state, summaries)
    scaling = {c: (float(derived[c].mean()), float(derived[c].std(ddof=0))) for c in BGNBD_INPUTS}
    return Preprocessing({**prep.numeric, **scaling}, prep.categorical, state)


NUMERIC, CATEGORIES = "_numeric", "_categories"  # the columns of ``input_arrays``


def input_arrays(prep: Preprocessing) -> tuple[Column, Column]:
    """The inputs of ``to_arrays`` as two Spark columns: ``NUMERIC``, an ``array<double>`` of the
    raw numerics (``standardise`` them in Python), and ``CATEGORIES``, an ``array<int>`` of
    category indices. Two columns cross from the JVM to Python instead of one per feature.
    Over a frame that holds the derived inputs (``with_derived``).

    The numerics travel raw because standardising 80 columns in Spark costs more than the
    transfer it saves (``bench/RESULTS.md``, Scoring), while numpy does it in one vectorised step.
    """
    numeric = [F.col(c).cast("double") for c in prep.numeric]
    categories = [_indexed(c, values) for c, values in prep.categorical.items()]
    numeric_array = F.array(*numeric) if numeric else F.array().cast("array<double>")
    categories_array = F.array(*categories) if categories else F.array().cast("array<int>")
    return numeric_array.alias(NUMERIC), categories_array.alias(CATEGORIES)


def apply(frame: DataFrame, prep: Preprocessing, keep: tuple[str, ...] = ()) -> DataFrame:
    """Model inputs: standardised numerics (a constant column becomes 0) and category indices."""
    frame = with_derived(frame, prep)
    scaled = [((F.col(c) - mean) / F.lit(std if std > 0 else 1.0)).cast("float").alias(c)
              for c, (mean, std) in prep.numeric.items()]
    indexed = [_indexed(c, values).alias(c) for c, values in prep.categorical.items()]
    return frame.select(*keep, *scaled, *indexed)


def _indexed(column: str, values: list[str]) -> Column:
    """The 1-based index of a category seen in training, ``UNKNOWN`` for any other value."""
    if not values:
        return F.lit(UNKNOWN).cast("int")
    lookup = F.create_map(*[x for i, v in enumerate(values) for x in (F.lit(v), F.lit(i + 1))])
    return F.coalesce(lookup[F.col(column)], F.lit(UNKNOWN)).cast("int")
