"""Every table's schema has one owner (``tables.table_spec``), and writes are held to it."""

from __future__ import annotations

import pytest

from churn_spark import tables
from churn_spark.config import TABLES, Config


def test_every_table_has_a_declared_schema_and_partitioning(config: Config) -> None:
    specs = {name: tables.table_spec(config, name) for name in TABLES}
    assert {n for n, s in specs.items() if s.partition_by == ("snapshot_date",)} == {
        "user_features", "training_set", "label_stats", "churn_scores", "alerts", "score_runs"}
    assert specs["events"].partition_by == ("event_date",)
    features = specs["training_set"].schema.fieldNames()
    assert features[:3] == ["user_id", "snapshot_date", "label"]
    assert features[3:] == specs["user_features"].schema.fieldNames()[2:]
    assert len(features) == 3 + 80
    with pytest.raises(ValueError, match="unknown table 'nope'"):
        tables.table_spec(config, "nope")
