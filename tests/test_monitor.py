"""``churn-spark monitor``: a scoring run's realised performance once its label window has matured,
and the retrain trigger's exit status, on hand-written events, scores, alerts and drift rows."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from churn_spark import runs, tables
from churn_spark.cli import main
from churn_spark.config import Config
from churn_spark.evaluate import expected_calibration_error
from churn_spark.monitor import RETRAIN, run_monitor
from churn_spark.train.tracking import register_bundle
from tests.builders import event, lr_bundle, store_dates, store_events

T = dt.date(2026, 3, 1)  # horizon 30: the label window [03-01, 03-31) matures with an event on 03-30
SCORES = "user_id string, snapshot_date date, churn_probability double, risk_tier string, model_version string"
# u1, u3 buy again within the window (label 0), u2 and u4 do not (1); u5 was lapsed at T.
EVENTS = [event("u1", "2026-02-20T10:00:00"), event("u1", "2026-03-10T10:00:00"),
          event("u2", "2026-02-25T10:00:00"), event("u3", "2026-02-15T10:00:00"),
          event("u3", "2026-03-05T10:00:00"), event("u4", "2026-02-10T10:00:00")]
MATURED = [event("u5", "2026-03-30T10:00:00")]


@pytest.fixture
def scored(spark: SparkSession, config: Config, tmp_path: Path) -> Config:
    """A registry whose version 1 tested at ROC-AUC 0.9, and its complete scoring run at T with
    u2 and u3 alerted (in order of probability: u2 .9 (churned), u3 .7, u4 .6 (churned), u1 .2)."""
    config = config.model_copy(update={
        "mlflow": config.mlflow.model_copy(update={"tracking_uri": str(tmp_path / "mlruns")})})
    lr_bundle().save(str(tmp_path / "lr.pt"))
    assert register_bundle(config, tmp_path / "lr.pt", {"test_roc_auc": 0.9}) == "1"
    store_dates(spark, config, "churn_scores", [("u1", T, 0.2, "low", "1"), ("u2", T, 0.9, "high", "1"),
                                                ("u3", T, 0.7, "high", "1"), ("u4", T, 0.6, "medium", "1"),
                                                ("u5", T, 0.95, "lapsed", "1")], SCORES, [T])
    store_dates(spark, config, "alerts", [("u2", T), ("u3", T)], "user_id string, snapshot_date date", [T])
    runs.record(spark, config, {"snapshot_date": T, "model_version": "1", "status": runs.COMPLETE})
    return config


def _arguments(config: Config) -> list[str]:
    return [a for s in (f"lakehouse={config.lakehouse}", f"mlflow.tracking_uri={config.mlflow.tracking_uri}")
            for a in ("--set", s)]


def test_a_matured_run_is_measured_once_and_a_fall_below_its_test_auc_triggers_a_retrain(
        spark: SparkSession, scored: Config, capsys: pytest.CaptureFixture[str]) -> None:
    store_events(spark, scored, EVENTS + MATURED)

    assert main(["monitor", *_arguments(scored)]) == RETRAIN
    (row,) = [r.asDict() for r in tables.read_table(spark, scored, "model_performance").collect()]
    y, p = np.array([0, 1, 0, 1]), np.array([0.2, 0.9, 0.7, 0.6])
    assert {k: v for k, v in row.items() if k != "computed_at"} == pytest.approx({
        "snapshot_date": T, "model_version": "1", "horizon_days": 30, "users": 4, "churn_rate": 0.5,
        "roc_auc": 0.75,  # u4 (churned) ranks below u3 (stayed): 3 of the 4 pairs in order
        "pr_auc": (1 + 2 / 3) / 2, "top_decile_lift": 2.0,  # the top user (u2) churned, at a rate of 0.5
        "ece": expected_calibration_error(y, p), "alerts": 2, "alert_precision": 0.5, "test_roc_auc": 0.9})
    assert capsys.readouterr().out.splitlines()[-1] == (
        "retrain: yes for version 1 (realised ROC-AUC 0.7500 at 2026-03-01 below its test 0.9000 - 0.05)")

    # Measured once: a second check finds nothing new, and the stored figure still decides.
    again = run_monitor(spark, scored)
    assert (again.measured, again.retrain) == ([], True)
    assert tables.read_table(spark, scored, "model_performance").count() == 1
    relaxed = scored.model_copy(update={"monitor": scored.monitor.model_copy(update={"auc_margin": 0.2})})
    assert run_monitor(spark, relaxed).reasons == []


def test_an_open_label_window_measures_nothing_and_keeps_the_model(
        spark: SparkSession, scored: Config, capsys: pytest.CaptureFixture[str]) -> None:
    store_events(spark, scored, EVENTS)  # the last event is on 03-10: the window is still open
    assert main(["monitor", *_arguments(scored)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "model_performance: no scoring run has matured since the last check",
        "retrain: no for version 1 (no rule fired)"]
    assert not tables.table_exists(spark, scored, "model_performance")


def test_the_score_psi_above_the_limit_on_the_last_two_runs_triggers_a_retrain(
        spark: SparkSession, scored: Config) -> None:
    store_events(spark, scored, EVENTS)
    days = [T, T + dt.timedelta(days=1), T + dt.timedelta(days=2)]
    schema = tables.SPECS["drift_metrics"].schema
    now = dt.datetime(2026, 3, 3)

    def drift(psi: list[float]) -> None:
        rows = [(day, "1", "churn_probability", value, 0.1, 4, now) for day, value in zip(days, psi, strict=True)]
        tables.replace_dates(spark.createDataFrame(rows, schema), scored, "drift_metrics", days)

    drift([0.1, 0.3, 0.4])
    assert run_monitor(spark, scored).reasons == ["score PSI 0.300, 0.400 above 0.25 on the last 2 runs"]
    drift([0.3, 0.4, 0.1])  # the newest run is back within the limit
    assert run_monitor(spark, scored).reasons == []
