"""The sequence model's input: each user's last days of ``user_daily`` activity before T.

``attach`` adds ``SEQUENCE`` to rows keyed by (user_id, snapshot_date): for each of the
``days`` days before T, oldest first and the day before T last, the ``CHANNELS`` of the user's
``user_daily`` row, as ``log1p`` of the day's count or amount (0 on a day without activity),
flattened day by day into one float array of ``days * len(CHANNELS)``. Which days lie before T
is ``labels.snapshot_days``' to say, as for every feature: the day of T and later never enter.

The same function serves training (the training_set's parts), evaluation, scoring and the
stream, so that the model reads the same input everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from churn_spark.labels import snapshot_days

SEQUENCE = "daily_sequence"  # the input column: days x channels floats, oldest day first
# Daily counts and amounts of user_daily that trace a user's activity thinning out.
CHANNELS = ("events", "views", "carts", "purchases", "spend", "services", "refunds", "low_ratings")


def attach(rows: DataFrame, daily: DataFrame, days: int, channels: Sequence[str] = CHANNELS) -> DataFrame:
    """``rows`` with ``SEQUENCE`` (see the module docstring) from ``daily`` (``user_daily`` rows)."""
    dates = sorted(r[0] for r in rows.select("snapshot_date").distinct().collect())
    if not dates:
        return rows.withColumn(SEQUENCE, F.array().cast("array<float>"))
    keys = rows.select("user_id").distinct()
    paired = snapshot_days(daily.join(keys, "user_id", "left_semi").select("user_id", "day", *channels),
                           dates, days).where("before_t")  # days_before_t: 1 (the day before T) .. days
    values = F.array(*[F.log1p(F.greatest(F.col(c).cast("double"), F.lit(0.0))) for c in channels])
    per_user = paired.groupBy("user_id", "snapshot_date").agg(
        F.map_from_entries(F.collect_list(F.struct("days_before_t", values))).alias("_days"))
    zeros = F.array(*[F.lit(0.0)] * len(channels))
    sequence = F.flatten(F.transform(F.sequence(F.lit(days), F.lit(1), F.lit(-1)),
                                     lambda before: F.coalesce(F.col("_days")[before], zeros)))
    return (rows.join(per_user, ["user_id", "snapshot_date"], "left")
            .withColumn(SEQUENCE, sequence.cast("array<float>")).drop("_days"))


def as_array(rows: pd.DataFrame, days: int, channels: int) -> np.ndarray:
    """The ``SEQUENCE`` column of pandas rows as one float32 matrix (rows, days * channels)."""
    if len(rows) == 0:
        return np.zeros((0, days * channels), dtype=np.float32)
    return np.stack([np.asarray(v, dtype=np.float32) for v in rows[SEQUENCE]]).reshape(len(rows), days * channels)
