"""Preprocessing fitted on the training split in Spark: standardisation and category vocabularies.

``fit`` runs one aggregation (means and standard deviations of the numeric features, the
distinct values of the categorical ones) on the training rows only; ``apply`` turns any split
into model inputs with Spark expressions, so that validation and test rows never inform the
scaling. The fitted state is plain data (``to_dict`` / ``from_dict``) for checkpoints and the
model registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

UNKNOWN = 0  # index of a category not seen in training
Z_LIMIT = 1e3  # standardised inputs are clipped to +-Z_LIMIT (see ``to_arrays``)


@dataclass(frozen=True)
class Preprocessing:
    """Fitted state: per numeric feature its mean and std; per categorical one its vocabulary."""

    numeric: dict[str, tuple[float, float]]
    categorical: dict[str, list[str]]

    def cardinalities(self) -> list[int]:
        """Embedding sizes: each vocabulary plus the unknown slot."""
        return [len(values) + 1 for values in self.categorical.values()]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> Preprocessing:
        return cls({k: (float(m), float(s)) for k, (m, s) in state["numeric"].items()},
                   {k: list(v) for k, v in state["categorical"].items()})


def to_arrays(frame: pd.DataFrame, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """The same inputs as ``apply``, from raw feature rows in pandas (for scoring and evaluation)."""
    numeric, categories = raw_arrays(frame, prep)
    return standardise(numeric, prep), categories


def raw_arrays(frame: pd.DataFrame, prep: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """The numerics as they are (float64, one column per ``prep.numeric`` feature) and the
    category indices (int64): what ``input_arrays`` gives in Spark, and what every model kind
    reads (``Bundle.model``)."""
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


def fit(train: DataFrame, numeric: list[str], categorical: list[str]) -> Preprocessing:
    """Fit on the training rows: one Spark aggregation, a few numbers per feature back.

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
    return Preprocessing(
        numeric={c: (float(stats[f"m_{c}"]), float(stats[f"s_{c}"] or 0.0)) for c in numeric},
        categorical={c: list(stats[f"v_{c}"]) for c in categorical},
    )


NUMERIC, CATEGORIES = "_numeric", "_categories"  # the columns of ``input_arrays``


def input_arrays(prep: Preprocessing) -> tuple[Column, Column]:
    """The inputs of ``to_arrays`` as two Spark columns: ``NUMERIC``, an ``array<double>`` of the
    raw numerics (``standardise`` them in Python), and ``CATEGORIES``, an ``array<int>`` of
    category indices. Two columns cross from the JVM to Python instead of one per feature.

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
