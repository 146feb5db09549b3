"""The feature and label jobs: compute for snapshot dates, check, and replace those partitions.

``user_features`` and ``training_set`` are Delta tables partitioned by ``snapshot_date``;
re-running a date replaces exactly that date's partition (Delta ``replaceWhere``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.features import KEYS, assemble, check_schema, compute_features
from churn_spark.labels import check_label_windows, label_aggregates

def build_training_set(
    events: DataFrame, users: DataFrame | None, snapshot_dates: Sequence[dt.date], config: Config,
    first_events: DataFrame | None = None,
) -> DataFrame:
    """Eligible users at each T with their label and every feature, from one pass over the events
    (``first_events`` as in ``compute_features``)."""
    labels = config.labels
    rows = assemble(events, users, snapshot_dates, config.features, after_days=labels.horizon_days,
                    extra=label_aggregates(labels.horizon_days, labels.lookback_days, labels.eligibility),
                    first_events=first_events)
    features = [c for c in rows.columns if c not in (*KEYS, "eligible", "label")]
    return rows.where("eligible = 1").select(*KEYS, "label", *features)


def run_features(spark: SparkSession, config: Config, snapshot_dates: Sequence[dt.date]) -> int:
    """Compute and write ``user_features`` for the dates; return the rows written."""
    events, users = read_inputs(spark, config)
    frame = compute_features(events, users, snapshot_dates, config.features, read_first_events(spark, config))
    check_schema(frame, config.features)
    return tables.replace_dates(frame, config, "user_features", snapshot_dates)


def run_labels(spark: SparkSession, config: Config, snapshot_dates: Sequence[dt.date]) -> int:
    """Compute and write ``training_set`` for the dates; return the rows written.

    Raises
    ------
    InputError
        Before anything is written, if a snapshot's label window is not complete in the data.
    """
    events, users = read_inputs(spark, config)
    check_label_windows(snapshot_dates, config.labels.horizon_days,
                        _last_event(events, max(snapshot_dates) + dt.timedelta(days=config.labels.horizon_days)))
    frame = build_training_set(events, users, snapshot_dates, config, read_first_events(spark, config))
    check_schema(frame.drop("label"), config.features)
    return tables.replace_dates(frame, config, "training_set", snapshot_dates)


def _last_event(events: DataFrame, needed: dt.date) -> dt.datetime | None:
    """The last event time; only the partitions from ``needed`` on are read when they suffice."""
    recent = events.where(F.col("event_date") >= needed).agg(F.max("event_time")).first()[0]
    return recent if recent is not None else events.agg(F.max("event_time")).first()[0]


def latest_snapshot(spark: SparkSession, config: Config, name: str = "user_features") -> dt.date:
    """The last snapshot date in table ``name``.

    Raises
    ------
    InputError
        If the table does not exist or is empty.
    """
    latest = (tables.read_table(spark, config, name).agg(F.max("snapshot_date")).first()[0]
              if tables.table_exists(spark, config, name) else None)
    if latest is None:
        raise InputError(f"{config.table(name)}: no snapshots; run churn-spark features first")
    return latest


def read_inputs(spark: SparkSession, config: Config) -> tuple[DataFrame, DataFrame | None]:
    if not tables.table_exists(spark, config, "events"):
        raise InputError(f"{config.table('events')}: no events table; run churn-spark ingest first")
    users = tables.read_table(spark, config, "users") if tables.table_exists(spark, config, "users") else None
    return tables.read_table(spark, config, "events"), users


def read_first_events(spark: SparkSession, config: Config) -> DataFrame | None:
    """The ``first_events`` table ingest keeps; None for a lakehouse ingested before it existed
    (the features then take each user's first event from the whole events table)."""
    if not tables.table_exists(spark, config, "first_events"):
        return None
    return tables.read_table(spark, config, "first_events")
