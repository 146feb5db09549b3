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
    """The same inputs as ``apply``, from raw feature rows in pandas (for scoring and evaluation).

    Standardised values are finite, so that one absurd row cannot turn a batch's logits into
    NaN: a missing value (NaN) reads as the training mean (0), and values are clipped to
    +-``Z_LIMIT`` standard deviations (infinities included), far beyond any real one.
    """
    numeric = np.column_stack([
        np.clip(np.nan_to_num(((frame[c].astype("float64") - mean) / (std if std > 0 else 1.0)).to_numpy(),
                              nan=0.0), -Z_LIMIT, Z_LIMIT).astype(np.float32)
        for c, (mean, std) in prep.numeric.items()]) if prep.numeric else np.zeros((len(frame), 0), np.float32)
    categories = np.column_stack([
        frame[c].map({v: i + 1 for i, v in enumerate(values)}).fillna(UNKNOWN).to_numpy(np.int64)
        for c, values in prep.categorical.items()]) if prep.categorical else np.zeros((len(frame), 0), np.int64)
    return numeric, categories


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
    """The inputs of ``to_arrays`` as two Spark columns, value for value: ``NUMERIC``, an
    ``array<float>`` of the standardised numerics, and ``CATEGORIES``, an ``array<int>`` of
    category indices. Two columns cross from the JVM to Python instead of one per feature.
    """
    numeric = [_scaled(c, mean, std) for c, (mean, std) in prep.numeric.items()]
    categories = [_indexed(c, values) for c, values in prep.categorical.items()]
    numeric_array = F.array(*numeric) if numeric else F.array().cast("array<float>")
    categories_array = F.array(*categories) if categories else F.array().cast("array<int>")
    return numeric_array.alias(NUMERIC), categories_array.alias(CATEGORIES)


def apply(frame: DataFrame, prep: Preprocessing, keep: tuple[str, ...] = ()) -> DataFrame:
    """Model inputs, one column per feature, with the values of ``to_arrays``."""
    scaled = [_scaled(c, mean, std).alias(c) for c, (mean, std) in prep.numeric.items()]
    indexed = [_indexed(c, values).alias(c) for c, values in prep.categorical.items()]
    return frame.select(*keep, *scaled, *indexed)


def _scaled(column: str, mean: float, std: float) -> Column:
    """Standardised (a constant column becomes 0), missing and NaN read as 0, clipped to
    +-``Z_LIMIT``: ``to_arrays``'s numerics in Spark."""
    z = (F.col(column).cast("double") - F.lit(mean)) / F.lit(std if std > 0 else 1.0)
    finite = F.coalesce(F.nanvl(z, F.lit(0.0)), F.lit(0.0))  # NaN sorts above every number: first
    return F.greatest(F.least(finite, F.lit(Z_LIMIT)), F.lit(-Z_LIMIT)).cast("float")


def _indexed(column: str, values: list[str]) -> Column:
    """The 1-based index of a category seen in training, ``UNKNOWN`` for any other value."""
    if not values:
        return F.lit(UNKNOWN).cast("int")
    lookup = F.create_map(*[x for i, v in enumerate(values) for x in (F.lit(v), F.lit(i + 1))])
    return F.coalesce(lookup[F.col(column)], F.lit(UNKNOWN)).cast("int")
