"""Alerts: who is newly at risk, the suggested action, the exports and the run's summary."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.alerts import action_column, build_alerts, run_alerts
from churn_spark.config import AlertsConfig, Config
from churn_spark.errors import InputError
from churn_spark.score import run_scoring
from tests.test_score import A, B, C, LAPSED, T1, T2, registered, store_features  # noqa: F401 (fixture)

T3 = dt.date(2026, 3, 29)
SCORES = ("user_id string, snapshot_date date, churn_probability double, risk_tier string, "
          "top_reasons array<string>, reason_features array<string>, spend_90d double, model_version string, "
          "scored_at timestamp")
AT = dt.datetime(2026, 3, 15, 6)


def score_rows(spark: SparkSession, day: dt.date, rows: list[tuple]):
    return spark.createDataFrame([(u, day, p, tier, [f"reason of {f}" for f in fs], fs, 10.0, "1", AT)
                                  for u, p, tier, fs in rows], SCORES)


def test_new_high_tier_and_large_rises_are_alerted(spark: SparkSession) -> None:
    previous = score_rows(spark, T1, [("stays_high", 0.95, "high", ["spend_30d"]),
                                      ("becomes_high", 0.60, "medium", ["refunds_30d"]),
                                      ("rises", 0.10, "low", ["sessions_30d"]),
                                      ("small_rise", 0.10, "low", ["sessions_30d"]),
                                      ("lapses", 0.10, "low", ["sessions_30d"])])
    current = score_rows(spark, T2, [("stays_high", 0.97, "high", ["spend_30d"]),
                                     ("becomes_high", 0.90, "high", ["refunds_30d", "spend_30d"]),
                                     ("rises", 0.45, "medium", ["views_30d"]),
                                     ("small_rise", 0.25, "low", ["sessions_30d"]),
                                     ("lapses", 0.99, "lapsed", ["sessions_30d"]),
                                     ("new_user", 0.91, "high", ["tenure_days"])])
    alerts = build_alerts(current, previous, AlertsConfig()).orderBy("user_id").collect()
    assert [(r.user_id, r.alert_reason, r.previous_tier, r.suggested_action) for r in alerts] == [
        ("becomes_high", "new_high_tier", "medium", "service follow-up call"),
        ("new_user", "new_high_tier", None, "personal check-in email"),
        ("rises", "probability_rise", "low", "win-back email"),
    ]
    first_run = build_alerts(previous, None, AlertsConfig()).collect()
    assert [(r.user_id, r.alert_reason) for r in first_run] == [("stays_high", "new_high_tier")]


def test_the_first_matching_rule_gives_the_action(spark: SparkSession) -> None:
    settings = AlertsConfig.model_validate({"default_action": "call", "actions": [
        {"action": "coupon", "features": ["spend_*"]}, {"action": "mail", "features": ["days_since_*", "spend_30d"]}]})
    rows = spark.createDataFrame([("a", ["days_since_last_view", "spend_90d"]), ("b", ["days_since_last_view"]),
                                  ("c", ["tenure_days"]), ("d", [])], "user_id string, reason_features array<string>")
    got = rows.select("user_id", action_column(settings.actions, settings.default_action).alias("a")).collect()
    assert [(r.user_id, r.a) for r in got] == [("a", "coupon"), ("b", "mail"), ("c", "call"), ("d", "call")]


def alerts_at(spark: SparkSession, config: Config, day: dt.date) -> list[tuple]:
    rows = tables.read_table(spark, config, "alerts").where(F.col("snapshot_date") == F.lit(day)).collect()
    return sorted((r.user_id, r.alert_reason, r.suggested_action) for r in rows)


def test_alerts_job_alerts_each_user_once_and_summarises(spark: SparkSession, registered: Config) -> None:
    # probability tiers: high >= 0.8, medium >= 0.3 (see the fixture); C at T2: days 30 -> p 0.60
    c_later = (30.0, *C[1:])
    for day, users in ((T1, {"a": A, "b": B, "c": C, "l": LAPSED}),
                       (T2, {"a": A, "b": A, "c": c_later, "d": A, "l": LAPSED}),
                       (T3, {"a": A, "b": A, "c": c_later, "d": A, "l": LAPSED})):
        store_features(spark, registered, day, users)
        run_scoring(spark, registered, day)
    summaries = {day: run_alerts(spark, registered, day) for day in (T1, T2, T3)}
    coupon = "coupon for a category they bought before"
    assert alerts_at(spark, registered, T1) == [("a", "new_high_tier", coupon)]
    assert alerts_at(spark, registered, T2) == [("b", "new_high_tier", coupon), ("c", "probability_rise", "win-back email"),
                                                ("d", "new_high_tier", coupon)]
    assert alerts_at(spark, registered, T3) == []  # still high, nothing new
    assert summaries[T3].new_alerts == 0, summaries[T3]
    summary = summaries[T2]
    assert (summary.users_scored, summary.tiers, summary.new_alerts) == (
        5, {"high": 3, "medium": 1, "lapsed": 1}, 3)
    assert summary.revenue_at_risk == pytest.approx(300.0)  # spend_90d of a, b, d (100 each)
    again = run_alerts(spark, registered, T2)  # re-run: same alerts, same summary row
    assert alerts_at(spark, registered, T2) == [("b", "new_high_tier", coupon), ("c", "probability_rise", "win-back email"),
                                                ("d", "new_high_tier", coupon)]
    assert again.new_alerts == 3
    runs = tables.read_table(spark, registered, "score_runs").orderBy("snapshot_date").collect()
    assert [(r.snapshot_date, r.users_scored, r.high, r.medium, r.low, r.lapsed, r.new_alerts) for r in runs] == [
        (T1, 4, 1, 1, 1, 1, 1), (T2, 5, 3, 1, 0, 1, 3), (T3, 5, 3, 1, 0, 1, 0)]
    exported = read_exports(Path(summary.exports))
    assert sorted(exported["csv"]["user_id"]) == ["b", "c", "d"]
    assert exported["jsonl"][0]["top_reasons"] == [
        "last purchase 50 days ago (typical 20)", "purchases fell 75% vs the previous 30 days",
        "money spent in the last 30 days: 50 (typical 100)"]


def test_exports_are_pseudonymised_with_the_salt_from_the_environment(
        spark: SparkSession, registered: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    config = registered.model_copy(update={"alerts": registered.alerts.model_copy(update={"pseudonymise": True})})
    store_features(spark, config, T1, {"a": A})
    run_scoring(spark, config, T1)
    monkeypatch.delenv("CHURN_EXPORT_SALT", raising=False)
    with pytest.raises(InputError, match=r"\$CHURN_EXPORT_SALT is not set"):
        run_alerts(spark, config, T1)
    assert not tables.table_exists(spark, config, "alerts")
    monkeypatch.setenv("CHURN_EXPORT_SALT", "pepper")
    exported = read_exports(Path(run_alerts(spark, config, T1).exports))
    assert exported["csv"]["user_id"].tolist() == [hashlib.sha256(b"peppera").hexdigest()]
    assert tables.read_table(spark, config, "alerts").first().user_id == "a"  # the table keeps the real id


def read_exports(folder: Path) -> dict:
    csv = pd.concat(pd.read_csv(p) for p in sorted((folder / "csv").glob("part-*.csv")))
    jsonl = [json.loads(line) for p in sorted((folder / "jsonl").glob("part-*.json")) for line in p.open()]
    return {"csv": csv, "jsonl": jsonl}
