"""Alerts: who is newly at risk, the suggested action, the exports and the run's summary."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import stat
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark import storage, tables
from churn_spark.alerts import action_column, build_alerts, run_alerts
from churn_spark.cli import main
from churn_spark.config import AlertsConfig, Config
from churn_spark.errors import InputError
from churn_spark.exports import ExportInfo, exported, recover, swap_in
from churn_spark.report import write_manager_report
from churn_spark.runs import incomplete_runs
from churn_spark.score import run_scoring
from tests.builders import A, B, C, LAPSED, T1, T2, store_features, store_legacy

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
        ("becomes_high", "new_high_tier", "medium", "service_call"),
        ("new_user", "new_high_tier", None, "winback_email"),
        ("rises", "probability_rise", "low", "winback_email"),
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


@pytest.mark.slow
def test_alerts_job_alerts_each_user_once_and_summarises(spark: SparkSession, registered: Config) -> None:
    # probability tiers: high >= 0.8, medium >= 0.3 (see the fixture); C at T2: days 30 -> p 0.60
    c_later = (30.0, *C[1:])
    for day, users in ((T1, {"a": A, "b": B, "c": C, "l": LAPSED}),
                       (T2, {"a": A, "b": A, "c": c_later, "d": A, "l": LAPSED}),
                       (T3, {"a": A, "b": A, "c": c_later, "d": A, "l": LAPSED})):
        store_features(spark, registered, day, users)
        run_scoring(spark, registered, day)
    summaries = {day: run_alerts(spark, registered, day) for day in (T1, T2, T3)}
    coupon = "coupon"
    assert alerts_at(spark, registered, T1) == [("a", "new_high_tier", coupon)]
    assert alerts_at(spark, registered, T2) == [
        ("b", "new_high_tier", coupon), ("c", "probability_rise", "winback_email"), ("d", "new_high_tier", coupon)]
    assert alerts_at(spark, registered, T3) == []  # still high, nothing new
    assert summaries[T3].new_alerts == 0, summaries[T3]
    summary = summaries[T2]
    assert (summary.users_scored, summary.tiers, summary.new_alerts) == (
        5, {"high": 3, "medium": 1, "lapsed": 1}, 3)
    assert summary.revenue_at_risk == pytest.approx(300.0)  # spend_90d of a, b, d (100 each)
    again = run_alerts(spark, registered, T2)  # re-run: same alerts, same summary row
    assert alerts_at(spark, registered, T2) == [
        ("b", "new_high_tier", coupon), ("c", "probability_rise", "winback_email"), ("d", "new_high_tier", coupon)]
    assert again.new_alerts == 3
    runs = tables.read_table(spark, registered, "score_runs").orderBy("snapshot_date").collect()
    assert [(r.snapshot_date, r.users_scored, r.high, r.medium, r.low, r.lapsed, r.new_alerts) for r in runs] == [
        (T1, 4, 1, 1, 1, 1, 1), (T2, 5, 3, 1, 0, 1, 3), (T3, 5, 3, 1, 0, 1, 0)]
    exported = read_exports(summary.exports)
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
    exported = read_exports(run_alerts(spark, config, T1).exports)
    assert exported["csv"]["user_id"].tolist() == [hashlib.sha256(b"peppera").hexdigest()]
    assert tables.read_table(spark, config, "alerts").first().user_id == "a"  # the table keeps the real id


def read_exports(location: str) -> dict:
    folder = Path(storage.local_path(location))
    csv = pd.concat(pd.read_csv(p) for p in sorted((folder / "csv").glob("part-*.csv")))
    jsonl = [json.loads(line) for p in sorted((folder / "jsonl").glob("part-*.json")) for line in p.open()]
    return {"csv": csv, "jsonl": jsonl}


# --- partial runs, exports swapped in whole, private exports -----------------------------------


def modes(folder: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of everything under ``folder``, the folder included."""
    return {("folder" if p.is_dir() else "file", stat.S_IMODE(p.stat().st_mode)) for p in [folder, *folder.rglob("*")]}


@pytest.mark.slow
def test_a_run_killed_after_its_scores_is_flagged_by_the_next_run_and_the_report(
        spark: SparkSession, registered: Config, caplog: pytest.LogCaptureFixture) -> None:
    for day in (T1, T2, T3):
        store_features(spark, registered, day, {"a": A, "b": B})
    run_scoring(spark, registered, T1)
    run_alerts(spark, registered, T1)
    run_scoring(spark, registered, T2)  # no alerts, no exports, no score_runs row: as a kill leaves it
    assert [i.line() for i in incomplete_runs(spark, registered)] == [
        "incomplete run 2026-03-15: scores written, alerts and exports not; run churn-spark alerts --as-of 2026-03-15"]
    with caplog.at_level(logging.WARNING, logger="churn_spark.report"):
        page = storage.read_text(write_manager_report(spark, registered))
    assert "Snapshot <b>2026-03-01</b>" in page  # the latest complete run
    assert "<li>incomplete run 2026-03-15: scores written, alerts and exports not; " in page
    assert [r.getMessage() for r in caplog.records if r.name == "churn_spark.report"] == [
        "incomplete run 2026-03-15: scores written, alerts and exports not; run churn-spark alerts --as-of 2026-03-15"]

    run_scoring(spark, registered, T3)
    following = run_alerts(spark, registered, T3)  # the next run says so
    assert following.warnings == (
        "incomplete run 2026-03-15: scores written, alerts and exports not; run churn-spark alerts --as-of 2026-03-15",)
    assert following.lines()[-1].startswith("warning: incomplete run 2026-03-15: ")
    assert run_alerts(spark, registered, T2).warnings == ()
    runs = tables.read_table(spark, registered, "score_runs").orderBy("snapshot_date").collect()
    assert [(r.snapshot_date, r.status, r.previous_snapshot) for r in runs] == [
        (T1, "complete", None), (T2, "complete", T1), (T3, "complete", T2)]


@pytest.mark.slow
def test_scoring_an_earlier_date_flags_the_later_dates_alerts_until_they_are_recomputed(
        spark: SparkSession, registered: Config) -> None:
    store_features(spark, registered, T1, {"a": A, "b": A})  # both high at T1
    store_features(spark, registered, T2, {"a": A, "b": A, "c": A})
    run_scoring(spark, registered, T2)
    run_alerts(spark, registered, T2)
    coupon = "coupon"
    assert alerts_at(spark, registered, T2) == [(u, "new_high_tier", coupon) for u in "abc"]  # no earlier run
    run_scoring(spark, registered, T1)  # an earlier date, scored afterwards
    assert [i.line() for i in incomplete_runs(spark, registered)] == [
        "incomplete run 2026-03-01: scores written, alerts and exports not; run churn-spark alerts --as-of 2026-03-01",
        "incomplete run 2026-03-15: alerts compare with no earlier run, but the previous run is now 2026-03-01; "
        "run churn-spark alerts --as-of 2026-03-15"]
    assert run_alerts(spark, registered, T1).warnings == (
        "incomplete run 2026-03-15: alerts compare with no earlier run, but the previous run is now 2026-03-01; "
        "run churn-spark alerts --as-of 2026-03-15",)
    assert alerts_at(spark, registered, T2) == [(u, "new_high_tier", coupon) for u in "abc"]  # flagged, not changed
    assert run_alerts(spark, registered, T2).warnings == ()
    assert alerts_at(spark, registered, T2) == [("c", "new_high_tier", coupon)]  # a and b were high at T1
    run_scoring(spark, registered, T1)  # re-scored: the later date's alerts compared with the old scores
    assert [i.line() for i in incomplete_runs(spark, registered)] == [
        "incomplete run 2026-03-01: scored again since its alerts and exports were written; "
        "run churn-spark alerts --as-of 2026-03-01",
        "incomplete run 2026-03-15: alerts compare with an earlier scoring of 2026-03-01 (scored again since); "
        "run churn-spark alerts --as-of 2026-03-15"]


def test_a_score_runs_table_from_before_run_status_gains_the_columns(spark: SparkSession, registered: Config) -> None:
    store_features(spark, registered, T1, {"a": A})
    store_features(spark, registered, T2, {"a": A, "b": A})
    run_scoring(spark, registered, T1)
    run_scoring(spark, registered, T2)
    legacy = spark.createDataFrame([(T1, "1", 1, 1, 0, 0, 0, 1, 100.0, AT)], (
        "snapshot_date date, model_version string, users_scored bigint, high bigint, medium bigint, low bigint, "
        "lapsed bigint, new_alerts bigint, revenue_at_risk double, recorded_at timestamp"))
    store_legacy(legacy, registered, "score_runs")  # as run_alerts wrote it before
    assert run_alerts(spark, registered, T2).warnings == ()  # the legacy row counts as complete
    runs = tables.read_table(spark, registered, "score_runs").orderBy("snapshot_date").collect()
    assert [(r.snapshot_date, r.new_alerts, r.status, r.previous_snapshot) for r in runs] == [
        (T1, 1, None, None), (T2, 1, "complete", T1)]


def test_a_run_whose_export_fails_stays_incomplete(spark: SparkSession, registered: Config) -> None:
    store_features(spark, registered, T1, {"a": A})
    run_scoring(spark, registered, T1)
    exports_folder = Path(storage.local_path(registered.location("exports")))
    exports_folder.parent.mkdir(parents=True, exist_ok=True)
    exports_folder.write_text("a file where the exports folder should be")
    with pytest.raises(OSError):
        run_alerts(spark, registered, T1)
    assert [i.line() for i in incomplete_runs(spark, registered)] == [
        "incomplete run 2026-03-01: alerts or exports not finished; run churn-spark alerts --as-of 2026-03-01"]
    exports_folder.unlink()
    assert run_alerts(spark, registered, T1).warnings == ()
    assert incomplete_runs(spark, registered) == []


def test_a_failed_export_leaves_the_previous_one_whole_and_nothing_else(spark: SparkSession, tmp_path: Path) -> None:
    root = tmp_path / "exports" / "alerts"
    rows = spark.createDataFrame([("a", 0.9)], "user_id string, churn_probability double").coalesce(1)
    swap_in(str(root), "2026-03-01", lambda folder: rows.write.json(f"{folder}/jsonl"), pseudonymised=False)
    before = {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    def fails_half_way(folder: str) -> None:
        rows.withColumn("user_id", F.lit("b")).write.json(f"{folder}/jsonl")
        failing = F.raise_error(F.lit("disk full")).cast("string")
        rows.withColumn("churn_probability", failing).write.csv(f"{folder}/csv")

    with pytest.raises(Exception, match="disk full"):
        swap_in(str(root), "2026-03-01", fails_half_way, pseudonymised=True)
    assert {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in root.iterdir()) == ["2026-03-01"]  # no staging folder, no _temporary
    assert exported(str(root)) == [ExportInfo("2026-03-01", False)]


def test_what_a_killed_swap_leaves_is_put_right_before_the_next_write(tmp_path: Path) -> None:
    root = tmp_path / "alerts"
    swap_in(str(root), "2026-03-01", lambda folder: (Path(folder) / "jsonl").mkdir(), pseudonymised=False)
    (root / "2026-03-01").rename(root / ".2026-03-01.previous")  # killed between the two renames
    (root / ".2026-03-01.staging-0123456789ab" / "csv" / "_temporary").mkdir(parents=True)
    assert exported(str(root)) == [ExportInfo("2026-03-01", False)]  # still there, moved aside
    recover(str(root), "2026-03-01")
    assert sorted(p.name for p in root.iterdir()) == ["2026-03-01"]
    assert sorted(p.name for p in (root / "2026-03-01").iterdir()) == ["_export.json", "jsonl"]
    (root / ".2026-03-01.previous").mkdir()  # killed after the second rename: the new export stays
    swap_in(str(root), "2026-03-01", lambda folder: (Path(folder) / "csv").mkdir(), pseudonymised=True)
    assert sorted(p.name for p in root.iterdir()) == ["2026-03-01"]
    assert sorted(p.name for p in (root / "2026-03-01").iterdir()) == ["_export.json", "csv"]
    assert exported(str(root)) == [ExportInfo("2026-03-01", True)]


@pytest.mark.slow
def test_exports_are_private_and_turning_pseudonymisation_on_offers_a_rewrite(
        spark: SparkSession, registered: Config, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    store_features(spark, registered, T1, {"a": A})
    store_features(spark, registered, T2, {"a": A, "d": A})
    run_scoring(spark, registered, T1)
    raw = run_alerts(spark, registered, T1).exports
    exports_folder = Path(storage.local_path(registered.location("exports")))
    assert modes(exports_folder) == {("folder", 0o700), ("file", 0o600)}
    assert read_exports(raw)["csv"]["user_id"].tolist() == ["a"]

    monkeypatch.setenv("CHURN_EXPORT_SALT", "pepper")
    hashed = registered.model_copy(update={"alerts": registered.alerts.model_copy(update={"pseudonymise": True})})
    run_scoring(spark, hashed, T2)
    summary = run_alerts(spark, hashed, T2)
    assert summary.warnings == ("the exports of 2026-03-01 carry raw user ids (written before alerts.pseudonymise "
                                "was on); run churn-spark alerts --rewrite-exports",)
    assert read_exports(summary.exports)["csv"]["user_id"].tolist() == [
        hashlib.sha256(b"pepperd").hexdigest()]  # a was high at T1 already
    assert read_exports(raw)["csv"]["user_id"].tolist() == ["a"]

    code = main(["alerts", "--rewrite-exports", "--set", f"lakehouse={registered.lakehouse}",
                 "--set", "alerts.pseudonymise=true"])
    assert (code, capsys.readouterr().out) == (
        0, f"rewrote the exports of 2 date(s) under {registered.location('exports')}/alerts with pseudonymised "
           "user ids\n")
    assert read_exports(raw)["csv"]["user_id"].tolist() == [hashlib.sha256(b"peppera").hexdigest()]
    assert read_exports(raw)["jsonl"][0]["user_id"] == hashlib.sha256(b"peppera").hexdigest()
    assert read_exports(summary.exports)["csv"]["user_id"].tolist() == [hashlib.sha256(b"pepperd").hexdigest()]
    assert exported(f"{registered.location('exports')}/alerts") == [ExportInfo("2026-03-01", True),
                                                                     ExportInfo("2026-03-15", True)]
    assert modes(exports_folder) == {("folder", 0o700), ("file", 0o600)}
