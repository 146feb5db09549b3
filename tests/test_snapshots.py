"""The feature and label jobs on real Delta tables: partitions per date, re-runs, refusals."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.snapshots import run_features, run_labels
from churn_spark.tables import read_table, table_exists
from tests.test_features import T, U1, U4, USERS, make_events, make_users

T2 = T - dt.timedelta(days=14)


def _store(spark: SparkSession, config: Config, events: DataFrame, users: DataFrame | None = None) -> None:
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


def _partition(spark: SparkSession, config: Config, day: dt.date) -> list:
    return sorted(read_table(spark, config, "user_features").where(F.col("snapshot_date") == day).collect())


def test_rerunning_a_date_replaces_exactly_its_partition(spark: SparkSession, config: Config) -> None:
    _store(spark, config, make_events(spark, U1), make_users(spark, USERS))
    assert run_features(spark, config, [T, T2]) == 4  # T: u1, u2; T2: u1, u2
    first_t, first_t2 = _partition(spark, config, T), _partition(spark, config, T2)

    run_features(spark, config, [T])
    assert _partition(spark, config, T) == first_t and _partition(spark, config, T2) == first_t2

    _store(spark, config, make_events(spark, U4))  # a new user, active just before T
    run_features(spark, config, [T])
    assert [r.user_id for r in _partition(spark, config, T)] == ["u1", "u2", "u4"]
    assert _partition(spark, config, T2) == first_t2


def test_labels_refuse_an_incomplete_window_before_writing(spark: SparkSession, config: Config) -> None:
    _store(spark, config, make_events(spark, U1))
    with pytest.raises(InputError, match=r"^snapshot 2026-03-01: label window \[2026-03-01, 2026-03-31\) is not "):
        run_labels(spark, config, [T])
    assert not table_exists(spark, config, "training_set")


def test_jobs_need_an_events_table(spark: SparkSession, config: Config) -> None:
    with pytest.raises(InputError, match="no events table; run churn-spark ingest first"):
        run_features(spark, config, [T])
