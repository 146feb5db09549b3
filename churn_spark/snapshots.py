"""The feature and label jobs: compute for snapshot dates, check, and replace those partitions.

``user_features`` and ``training_set`` are Delta tables partitioned by ``snapshot_date``;
re-running a date replaces exactly that date's partition (Delta ``replaceWhere``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.features import KEYS, assemble, check_schema, compute_features, features_from_daily
from churn_spark.features.recency import first_event_times
from churn_spark.labels import check_label_windows, label_aggregates
from churn_spark.rollup import run_rollup

log = logging.getLogger(__name__)


def build_training_set(
    events: DataFrame, users: DataFrame | None, snapshot_dates: Sequence[dt.date], config: Config,
    first_events: DataFrame | None = None, daily: DataFrame | None = None,
) -> DataFrame:
    """Eligible users at each T with their label and every feature, from one pass over the
    ``user_daily`` rows where ``daily`` is given, else over the events (the reference path;
    ``first_events`` as in ``compute_features``)."""
    labels = config.labels
    horizon, extra = labels.horizon_days, label_aggregates(
        labels.horizon_days, labels.lookback_days, labels.eligibility, daily=daily is not None)
    if daily is None:
        rows = assemble(events, users, snapshot_dates, config.features, horizon, extra, first_events)
    else:
        rows = features_from_daily(daily, users, snapshot_dates, config.features,
                                   _first_events(events, first_events), horizon, extra)
    features = [c for c in rows.columns if c not in (*KEYS, "eligible", "label")]
    return rows.where("eligible = 1").select(*KEYS, "label", *features)


def run_features(spark: SparkSession, config: Config, snapshot_dates: Sequence[dt.date],
                 from_events: bool = False) -> int:
    """Compute and write ``user_features`` for the dates; return the rows written.

    The features are folded from the ``user_daily`` rollup, brought up to date first (an
    incremental ``run_rollup``); ``from_events`` computes them from the raw events instead, the
    reference path the rollup is tested against.
    """
    frame = features_at(spark, config, snapshot_dates, from_events)
    check_schema(frame, config.features)
    return tables.replace_dates(frame, config, "user_features", snapshot_dates)


def features_at(spark: SparkSession, config: Config, snapshot_dates: Sequence[dt.date],
                from_events: bool = False) -> DataFrame:
    """The ``user_features`` rows of the dates, folded from the rollup (brought up to date
    first), or with ``from_events`` aggregated from the raw events; nothing is written."""
    events, users = read_inputs(spark, config)
    first_events = read_first_events(spark, config)
    if from_events:
        return compute_features(events, users, snapshot_dates, config.features, first_events)
    return features_from_daily(read_daily(spark, config), users, snapshot_dates, config.features,
                               _first_events(events, first_events))


def read_daily(spark: SparkSession, config: Config) -> DataFrame:
    """The ``user_daily`` table, brought up to the current events first (``run_rollup``)."""
    run_rollup(spark, config)
    return tables.read_table(spark, config, "user_daily")


def _first_events(events: DataFrame, stored: DataFrame | None) -> DataFrame:
    return stored if stored is not None else first_event_times(events)


@dataclass(frozen=True)
class SnapshotLabels:
    """One snapshot's labels: who was eligible at T and how many of them churned."""

    snapshot_date: dt.date
    eligible_users: int
    churners: int

    @property
    def churn_rate(self) -> float:
        return self.churners / self.eligible_users if self.eligible_users else 0.0


@dataclass(frozen=True)
class LabelRun:
    """What ``run_labels`` wrote: the training_set rows, and per snapshot its label counts."""

    rows: int
    snapshots: tuple[SnapshotLabels, ...]

    def lines(self) -> list[str]:
        per_snapshot = [f"  {s.snapshot_date}: {s.eligible_users} eligible users, {s.churners} churners, "
                        f"churn rate {s.churn_rate:.4f}" for s in self.snapshots]
        return [f"training_set: {self.rows} rows for {len(self.snapshots)} snapshot date(s)", *per_snapshot]


def run_labels(spark: SparkSession, config: Config, snapshot_dates: Sequence[dt.date]) -> LabelRun:
    """Compute and write ``training_set`` for the dates, and each date's counts to ``label_stats``.

    Returns
    -------
    LabelRun
        The rows written and, per snapshot, the eligible users, churners and churn rate
        (the first figures a user checks against their own numbers).

    Raises
    ------
    InputError
        Before anything is written, if a snapshot's label window is not complete in the data.
    """
    events, users = read_inputs(spark, config)
    check_label_windows(snapshot_dates, config.labels.horizon_days,
                        _last_event(events, max(snapshot_dates) + dt.timedelta(days=config.labels.horizon_days)))
    frame = build_training_set(events, users, snapshot_dates, config, read_first_events(spark, config),
                               daily=read_daily(spark, config))
    check_schema(frame.drop("label"), config.features)
    rows = tables.replace_dates(frame, config, "training_set", snapshot_dates)
    written = tables.read_table(spark, config, "training_set").where(F.col("snapshot_date").isin(list(snapshot_dates)))
    stats = label_stats(written, snapshot_dates, config)
    tables.replace_dates(stats, config, "label_stats", snapshot_dates)
    counts = {r["snapshot_date"]: r for r in stats.collect()}
    snapshots = tuple(SnapshotLabels(d, counts[d]["eligible_users"], counts[d]["churners"]) if d in counts
                      else SnapshotLabels(d, 0, 0) for d in sorted(set(snapshot_dates)))
    for snapshot in snapshots:
        log.info("labels %s: %d eligible, churn rate %.4f", snapshot.snapshot_date, snapshot.eligible_users,
                 snapshot.churn_rate)
    return LabelRun(rows, snapshots)


def label_stats(training_set: DataFrame, snapshot_dates: Sequence[dt.date], config: Config) -> DataFrame:
    """One ``label_stats`` row per snapshot date: eligible users, churners, churn rate, the label settings.

    A date with no eligible user gets a row of zeros, so that it shows in the table too.
    """
    labels = config.labels
    spark = training_set.sparkSession
    dates = spark.createDataFrame([(d,) for d in sorted(set(snapshot_dates))], "snapshot_date date")
    counts = training_set.groupBy("snapshot_date").agg(
        F.count(F.lit(1)).alias("eligible_users"), F.sum("label").cast("long").alias("churners"))
    return (dates.join(counts, "snapshot_date", "left").na.fill(0, ["eligible_users", "churners"])
            .select("snapshot_date", "eligible_users", "churners",
                    F.when(F.col("eligible_users") > 0, F.col("churners") / F.col("eligible_users"))
                    .otherwise(0.0).alias("churn_rate"),
                    F.lit(labels.horizon_days).alias("horizon_days"),
                    F.lit(labels.lookback_days).alias("lookback_days"),
                    F.lit(labels.eligibility).alias("eligibility"),
                    F.current_timestamp().alias("computed_at")))


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
