import datetime as dt
import runpy
from pathlib import Path

import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from churn_spark.config import Config
from churn_spark.ingest import ingest
from churn_spark.quality import daily_activity, quarantine_by_reason
from tests.builders import write_jsonl
from tests.conftest import ROOT, TEST_SETTINGS
from tests.test_ingest import EVENTS, USERS


def test_quarantine_by_reason_counts_each_reason(spark: SparkSession) -> None:
    rows = spark.createDataFrame(
        [("events", ["missing_required", "bad_price"]), ("events", ["bad_price"]), ("users", ["bad_age"])],
        "dataset string, reasons array<string>")
    assertDataFrameEqual(quarantine_by_reason(rows), [
        Row("events", "bad_price", 2), Row("events", "missing_required", 1), Row("users", "bad_age", 1)])


def test_daily_activity_pivots_types_and_counts_users(spark: SparkSession) -> None:
    d1, d2 = dt.date(2026, 2, 1), dt.date(2026, 2, 2)
    events = spark.createDataFrame(
        [(d1, "u1", "view"), (d1, "u1", "view"), (d1, "u2", "purchase"), (d2, "u2", "review")],
        "event_date date, user_id string, event_type string")
    assertDataFrameEqual(daily_activity(events), [
        Row(d1, 2, 2, 0, 1, 0, 0, 0), Row(d2, 1, 0, 0, 0, 0, 1, 0)])


@pytest.mark.slow
def test_notebook_runs_as_a_local_script(spark: SparkSession, config: Config, tmp_path: Path,
                                         capsys, monkeypatch) -> None:
    ingest(spark, config, write_jsonl(tmp_path / "in" / "events.jsonl", EVENTS),
           write_jsonl(tmp_path / "in" / "users.jsonl", USERS))
    monkeypatch.setenv("CHURN_OVERRIDES", ";".join([*TEST_SETTINGS, f"lakehouse={config.lakehouse}"]))
    runpy.run_path(str(ROOT / "notebooks" / "01_ingest_and_quality.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "unknown_event_type" in printed and "bad_age" in printed
    assert "|2026-02-01|1           |1   |0   |1       |" in printed
