"""The manager's report: the undated page shows the latest run; older dates get their own page."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from churn_spark.alerts import run_alerts
from churn_spark.config import Config
from churn_spark.report import write_manager_report
from churn_spark.score import run_scoring
from tests.builders import A, B, T1, T2, store_features


@pytest.mark.slow
def test_a_report_of_an_older_date_leaves_the_latest_page_alone(spark: SparkSession, registered: Config) -> None:
    for day in (T1, T2):
        store_features(spark, registered, day, {"a": A, "b": B})
        run_scoring(spark, registered, day)
        run_alerts(spark, registered, day)
    latest = write_manager_report(spark, registered)
    assert latest.name == "manager.html"
    page = latest.read_text()
    assert "Snapshot <b>2026-03-15</b>" in page
    assert (latest.parent / "manager-2026-03-15.html").read_text() == page

    older = write_manager_report(spark, registered, T1)
    assert older == latest.parent / "manager-2026-03-01.html"
    assert "Snapshot <b>2026-03-01</b>" in older.read_text()
    assert latest.read_text() == page  # still the latest run's page
    assert sorted(p.name for p in latest.parent.iterdir()) == [
        "manager-2026-03-01.html", "manager-2026-03-15.html", "manager.html"]
    assert write_manager_report(spark, registered, T2) == latest
