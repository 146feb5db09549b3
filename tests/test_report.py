"""The manager's report: the undated page shows the latest run; older dates get their own page."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from churn_spark import storage
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
    reports = registered.location("reports")
    latest = write_manager_report(spark, registered)
    assert latest == f"{reports}/manager.html"
    page = storage.read_text(latest)
    assert "Snapshot <b>2026-03-15</b>" in page
    assert storage.read_text(f"{reports}/manager-2026-03-15.html") == page

    older = write_manager_report(spark, registered, T1)
    assert older == f"{reports}/manager-2026-03-01.html"
    assert "Snapshot <b>2026-03-01</b>" in storage.read_text(older)
    assert storage.read_text(latest) == page  # still the latest run's page
    assert storage.listdir(reports) == ["manager-2026-03-01.html", "manager-2026-03-15.html", "manager.html"]
    assert write_manager_report(spark, registered, T2) == latest
