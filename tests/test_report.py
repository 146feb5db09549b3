"""The manager's report: the undated page shows the latest run; older dates get their own page;
the page follows the runs over time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import SparkSession

from churn_spark import storage, tables
from churn_spark.alerts import run_alerts
from churn_spark.config import Config
from churn_spark.report import run_history, write_manager_report
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


@pytest.mark.slow
def test_the_page_follows_tiers_alerts_drift_realised_quality_and_the_policy_across_runs(
        spark: SparkSession, registered: Config) -> None:
    """Two runs; drift measured at both (hand rows), the first's label window closed (a hand row)."""
    for day in (T1, T2):
        store_features(spark, registered, day, {"a": A, "b": B})
        run_scoring(spark, registered, day)
        run_alerts(spark, registered, day)
    now = dt.datetime(2026, 4, 20)
    drift = [(day, "1", feature, psi, 0.1, 2, now) for day, scale in ((T1, 0.0), (T2, 1.0))
             for feature, psi in (("churn_probability", 0.3 * scale), ("spend_30d", 0.5 * scale))]
    tables.replace_dates(spark.createDataFrame(drift, tables.SPECS["drift_metrics"].schema), registered,
                         "drift_metrics", [T1, T2])
    realised = [(T1, "1", 30, 2, 0.5, 1.0, 1.0, 2.0, 0.2, 1, 1.0, 0.9, now)]
    tables.replace_dates(spark.createDataFrame(realised, tables.SPECS["model_performance"].schema), registered,
                         "model_performance", [T1])

    history = run_history(spark, registered, T2)
    assert history[["snapshot_date", "users_scored", "high", "low", "new_alerts", "revenue_at_risk"]].values.tolist() \
        == [[T1, 2, 1, 1, 1, 100.0], [T2, 2, 1, 1, 0, 100.0]]  # A high at both, alerted once
    assert history[["score_psi", "max_feature_psi"]].values.tolist() == [[0.0, 0.0], [0.3, 0.5]]
    assert history["realised_roc_auc"].tolist()[0] == 1.0 and np.isnan(history["realised_roc_auc"].tolist()[1])
    page = storage.read_text(write_manager_report(spark, registered))
    assert ("<tr><td>2026-03-15</td><td>1</td><td>2</td><td>1</td><td>0</td><td>0</td><td>100.00</td><td>0.300</td>"
            "<td>0.500</td><td>-</td><td>-</td><td>-</td></tr>") in page
    assert "<td>1.000</td><td>0.900</td><td>1.000</td></tr>" in page  # T1: realised, test, alert precision
    assert "Retention policy" not in page  # no policy judged yet

    judged = [(T1, "v1", policy, estimator, action, users, value, low, high, 40.0, 60, now)
              for policy, estimator, action, users, value, low, high in (
                  ("learnt", "dr", "all", 60, 3.5, 2.0, 5.0), ("learnt", "dr", "coupon", 20, 2.5, 1.0, 4.0),
                  ("learnt", "dr", "none", 40, 1.0, 0.5, 1.5), ("learnt", "truth", "all", 60, 3.25, None, None),
                  ("rules", "dr", "all", 60, 1.0, -0.5, 2.5), ("rules", "truth", "all", 60, 1.5, None, None))]
    tables.replace_dates(spark.createDataFrame(judged, tables.SPECS["policy_evaluation"].schema), registered,
                         "policy_evaluation", [T1])
    page = storage.read_text(write_manager_report(spark, registered))
    assert "Retention policy v1 (assignments through 2026-03-01, 60 of them)" in page
    assert "<tr><th>policy</th><th>dr</th><th>truth</th></tr>" in page
    assert "<tr><td>learnt</td><td>3.50 [2.00, 5.00]</td><td>3.25</td></tr>" in page
    assert "<tr><td>rules</td><td>1.00 [-0.50, 2.50]</td><td>1.50</td></tr>" in page

