"""Every table's schema has one owner (``tables.table_spec``), and writes are held to it."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import TABLES, Config
from churn_spark.errors import StorageError

T = dt.date(2026, 3, 1)
SCORES = ("user_id string, snapshot_date date, churn_probability double, risk_tier string, "
          "top_reasons array<string>, reason_features array<string>, spend_90d double, "
          "model_version string, scored_at timestamp")
ROW = ("u1", T, 0.75, "high", ["r"], ["f"], 12.5, "3", dt.datetime(2026, 3, 1, 6))


def test_every_table_has_a_declared_schema_and_partitioning(config: Config) -> None:
    specs = {name: tables.table_spec(config, name) for name in TABLES}
    assert {n for n, s in specs.items() if s.partition_by == ("snapshot_date",)} == {
        "user_features", "training_set", "label_stats", "churn_scores", "alerts", "score_runs", "drift_metrics",
        "model_performance"}
    assert specs["events"].partition_by == ("event_date",)
    features = specs["training_set"].schema.fieldNames()
    assert features[:3] == ["user_id", "snapshot_date", "label"]
    assert features[3:] == specs["user_features"].schema.fieldNames()[2:]
    assert len(features) == 3 + 83
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        tables.table_spec(config, "nope")


def test_rows_are_written_in_the_tables_column_order(spark: SparkSession, config: Config) -> None:
    columns = SCORES.split(", ")
    shuffled = spark.createDataFrame([ROW], SCORES).select(*[c.split()[0] for c in reversed(columns)])
    assert tables.replace_dates(shuffled, config, "churn_scores", [T]) == 1
    stored = tables.read_table(spark, config, "churn_scores")
    assert stored.schema.simpleString() == f"struct<{','.join(c.replace(' ', ':') for c in columns)}>"
    assert tuple(stored.first()) == ROW


def test_rows_of_another_shape_are_refused_before_anything_is_written(spark: SparkSession, config: Config) -> None:
    wrong = (spark.createDataFrame([ROW], SCORES).drop("spend_90d")
             .withColumn("churn_probability", F.col("churn_probability").cast("string")).withColumn("extra", F.lit(1)))
    with pytest.raises(StorageError) as refused:
        tables.replace_dates(wrong, config, "churn_scores", [T])
    assert str(refused.value) == (f"{config.table('churn_scores')}: rows do not match the table's schema "
                                  "(missing spend_90d; unexpected extra; churn_probability is string, expected double)")
    assert not tables.table_exists(spark, config, "churn_scores")
