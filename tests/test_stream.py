"""Real-time warnings on real streaming queries: the Delta events table (or a landing folder) as
the source, real checkpoints, ``available-now`` runs of ``churn-spark stream``.

The model is a logistic regression with hand-set weights over three features a bad day moves:
logit = -1 + 1.5 refunds_30d + 1.5 service_contacts_30d - (purchases_30d - 1). User ``u1``
bought twice in February and called the service desk on 9 March: at the start of 10 March the
batch job scores them logit -0.5 (p 0.378, medium). On 10 March they call again and ask for a
refund: logit 2.5 (p 0.924), high. ``u2`` only buys again on 10 March.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import Row, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.errors import ConfigError, InputError
from churn_spark.ingest import ingest
from churn_spark.live import Baseline, build_warnings, features_now, silent_users
from churn_spark.score import run_scoring
from churn_spark.snapshots import features_at
from churn_spark.stream import parse_trigger, run_stream
from churn_spark.train.preprocess import Preprocessing
from tests.builders import event, lr_bundle, profile, register, store_events, write_jsonl
from tests.conftest import ROOT, TEST_SETTINGS

DAY = dt.date(2026, 3, 10)
PREP = Preprocessing(numeric={"refunds_30d": (0.0, 1.0), "service_contacts_30d": (0.0, 1.0),
                              "purchases_30d": (1.0, 1.0)},
                     categorical={"membership_level": ["gold", "silver"]})
HISTORY = [event("u1", "2026-02-12 10:00", "purchase", 40.0), event("u1", "2026-02-20 10:00", "purchase", 60.0),
           event("u1", "2026-03-09 09:00", "service"),
           event("u2", "2026-02-15 10:00", "purchase", 30.0), event("u2", "2026-02-25 10:00", "purchase", 30.0)]
BAD_DAY = [event("u1", "2026-03-10 08:15", "service"), event("u1", "2026-03-10 08:40", "refund"),
           event("u2", "2026-03-10 12:00", "purchase", 25.0)]


def _logistic(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit))


@pytest.fixture
def streaming(config: Config, tmp_path: Path) -> Config:
    """The hand-set model registered; tiers by probability (high >= 0.8, medium >= 0.3); the
    stream's clock the newest event; u1 and u2's history stored and scored at the start of DAY."""
    config = config.model_copy(update={
        "mlflow": config.mlflow.model_copy(update={"tracking_uri": str(tmp_path / "mlruns")}),
        "score": config.score.model_copy(update={"tiers_by": "probability", "high": 0.8, "medium": 0.3}),
        "stream": config.stream.model_copy(update={"clock": "events"}),
    })
    register(config, lr_bundle(PREP, weights=(1.5, 1.5, -1.0), category=(0.0, 0.0, 0.0), bias=-1.0),
             tmp_path / "lr.pt")
    return config


def _warnings(spark: SparkSession, config: Config) -> list[tuple]:
    rows = tables.read_table(spark, config, "warnings").orderBy("user_id", "kind").collect()
    return [(r["user_id"], r["day"], r["kind"], r["features_at"], round(r["probability_before"], 6),
             round(r["probability_after"], 6), r["risk_tier"], r["reason_features"], r["suggested_action"],
             r["model_version"]) for r in rows]


@pytest.mark.slow  # three streaming runs and two scoring runs
def test_a_bad_day_warns_once_with_its_reasons_and_the_batch_score(spark: SparkSession, streaming: Config) -> None:
    store_events(spark, streaming, HISTORY, [profile("u1"), profile("u2")])
    run_scoring(spark, streaming, DAY)  # the day's baseline, from the events before DAY
    run_stream(spark, streaming, "available-now")  # first start: rollup, nothing new yet
    store_events(spark, streaming, BAD_DAY)
    run = run_stream(spark, streaming, "available-now")

    before, after = _logistic(-1 + 1.5 - 1), _logistic(-1 + 1.5 + 3.0 - 1)
    expected = [(DAY, kind, DAY + dt.timedelta(days=1), round(before, 6), round(after, 6), "high",
                 ["service_contacts_30d", "refunds_30d"], "service_call", "1")
                for kind in ("high_tier", "probability_rise")]
    assert _warnings(spark, streaming) == [("u1", *row) for row in expected]
    assert (run.progress.batches, run.progress.warnings) == (1, 2)
    reasons = tables.read_table(spark, streaming, "warnings").first()["top_reasons"]
    assert len(reasons) == 2 and all(isinstance(r, str) and r for r in reasons)

    # The batch job at the same instant (T = DAY + 1, the same events) gives the same score.
    run_scoring(spark, streaming, DAY + dt.timedelta(days=1))
    batch = (tables.read_table(spark, streaming, "churn_scores")
             .where(F.col("snapshot_date") == DAY + dt.timedelta(days=1)).where("user_id = 'u1'").first())
    warned = tables.read_table(spark, streaming, "warnings").first()
    assert warned["probability_after"] == pytest.approx(batch["churn_probability"], abs=1e-12)
    assert warned["top_reasons"] == batch["top_reasons"]

    # A second run finds nothing new and writes nothing.
    again = run_stream(spark, streaming, "available-now")
    assert again.progress.batches == 0
    assert len(_warnings(spark, streaming)) == 2


@pytest.mark.slow  # three streaming runs and two scoring runs
def test_streamed_features_equal_the_batch_features_after_late_and_out_of_order_events(
        spark: SparkSession, streaming: Config) -> None:
    """Events of earlier days arrive after later ones (a purchase that resolves a service
    contact of the week before, a view from three days back): the rows the stream merged into
    user_daily fold to exactly the batch job's features at the same instant."""
    store_events(spark, streaming, HISTORY, [profile("u1"), profile("u2")])
    run_scoring(spark, streaming, DAY)
    run_stream(spark, streaming, "available-now")
    store_events(spark, streaming, BAD_DAY)
    store_events(spark, streaming, [event("u1", "2026-03-07 10:00", "view"),
                                    event("u2", "2026-03-04 10:00", "service")])
    store_events(spark, streaming, [event("u2", "2026-03-09 10:00", "purchase", 10.0)])  # resolves the contact
    run_stream(spark, streaming, "available-now")

    as_of = DAY + dt.timedelta(days=1)
    users = spark.createDataFrame([("u1",), ("u2",)], "user_id string")
    streamed = features_now(spark, streaming, users, as_of)
    daily_before_rollup = tables.read_table(spark, streaming, "user_daily")
    assertDataFrameEqual(daily_before_rollup.where("user_id = 'u2' AND day = DATE'2026-03-04'")
                         .select("service_unresolved"), [(0,)], checkRowOrder=False)
    batch = features_at(spark, streaming, [as_of], from_events=True)
    assertDataFrameEqual(streamed, batch, checkRowOrder=False)


def test_tiers_by_quantile_need_a_scoring_run_and_refuse_before_writing(
        spark: SparkSession, streaming: Config) -> None:
    quantile = streaming.model_copy(update={"score": streaming.score.model_copy(
        update={"tiers_by": "quantile", "high": 0.9, "medium": 0.7})})
    store_events(spark, quantile, HISTORY, [profile("u1"), profile("u2")])
    with pytest.raises(InputError, match="no scoring run at or before 2026-03-09 to take the tier cut-offs"):
        run_stream(spark, quantile, "available-now")
    assert not tables.table_exists(spark, quantile, "warnings")


SCORED = ("user_id string, snapshot_date date, churn_probability double, active boolean, "
          "top_reasons array<string>, reason_features array<string>, spend_90d double")


def test_warnings_compare_each_score_with_the_days_baseline(spark: SparkSession, config: Config) -> None:
    """Crossing into high (from medium, or never scored), a rise over 0.2 (not for lapsed users),
    both at once; a user already high, or rising too little, is not warned."""
    now = spark.createDataFrame([
        ("up", DAY, 0.85, True, ["r"], ["refunds_30d"], 10.0),      # medium -> high, +0.35: both kinds
        ("new", DAY, 0.90, True, [], [], None),                      # not in the baseline run: high
        ("still", DAY, 0.95, True, [], [], 5.0),                     # high before and now
        ("rise", DAY, 0.55, True, ["v"], ["views_30d"], 1.0),        # low -> medium, +0.45: a rise
        ("small", DAY, 0.45, True, [], [], 1.0),                     # +0.15
        ("gone", DAY, 0.99, False, [], [], 0.0),                     # lapsed: no warning
    ], SCORED)
    before = spark.createDataFrame([("up", 0.5, "medium", 10.0), ("still", 0.9, "high", 5.0),
                                    ("rise", 0.1, "low", 1.0), ("small", 0.3, "medium", 1.0),
                                    ("gone", 0.2, "low", 0.0)],
                                   "user_id string, probability_before double, tier_before string, spend_before double")
    baseline = Baseline(DAY, before, high=0.8, medium=0.3, high_value=None)
    warned_at = dt.datetime(2026, 3, 10, 9, 30)

    got = build_warnings(now, baseline, config, DAY, "7", warned_at).drop("warning_id", "top_reasons")

    action, default = "service_call", config.alerts.default_action
    assertDataFrameEqual(got, [
        Row("up", DAY, "high_tier", warned_at, DAY, 0.5, 0.85, "high", ["refunds_30d"], action, 10.0, "7"),
        Row("up", DAY, "probability_rise", warned_at, DAY, 0.5, 0.85, "high", ["refunds_30d"], action, 10.0, "7"),
        Row("new", DAY, "high_tier", warned_at, DAY, None, 0.9, "high", [], default, None, "7"),
        Row("rise", DAY, "probability_rise", warned_at, DAY, 0.1, 0.55, "medium", ["views_30d"], "winback_email",
            1.0, "7"),
    ], checkRowOrder=False)


def test_the_warning_key_is_the_user_the_kind_and_the_day(spark: SparkSession, config: Config) -> None:
    now = spark.createDataFrame([("u1", DAY, 0.9, True, [], [], 1.0)], SCORED)
    baseline = Baseline(DAY, now.limit(0).selectExpr("user_id", "0.0 AS probability_before",
                                                     "'' AS tier_before", "0.0 AS spend_before"), 0.8, 0.3, None)
    (first,) = build_warnings(now, baseline, config, DAY, "1", dt.datetime(2026, 3, 10, 9)).collect()
    (later,) = build_warnings(now, baseline, config, DAY, "2", dt.datetime(2026, 3, 10, 17)).collect()
    assert first["warning_id"] == later["warning_id"] == hashlib.sha256(b"u1|high_tier|2026-03-10").hexdigest()


def test_silent_users_are_those_whose_last_event_is_exactly_n_days_old(spark: SparkSession) -> None:
    daily = spark.createDataFrame([
        ("gone14", dt.date(2026, 2, 20)), ("gone14", dt.date(2026, 2, 24)),   # last 24 Feb: 14 days before 10 Mar
        ("gone15", dt.date(2026, 2, 23)),                                      # crossed yesterday
        ("back", dt.date(2026, 2, 24)), ("back", dt.date(2026, 3, 9)),        # active since
        ("gone13", dt.date(2026, 2, 25)),
    ], "user_id string, day date")
    assertDataFrameEqual(silent_users(daily, DAY, 14), [Row("gone14")])


@pytest.mark.parametrize("text, expected", [
    ("available-now", {"availableNow": True}), ("10s", {"processingTime": "10 seconds"}),
    ("1 minute", {"processingTime": "60 seconds"})])
def test_triggers_are_read_for_both_ways_of_running(text: str, expected: dict) -> None:
    assert parse_trigger(text) == expected


def test_an_unknown_trigger_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="trigger 'soon': expected available-now or an interval"):
        parse_trigger("soon")


# --- restarts, kills and landing files: processes of their own, landing folders (slow) ---------

def _overrides(config: Config) -> list[str]:
    """``--set`` values that give a ``churn-spark stream`` process ``config``'s lakehouse, model
    registry, tiers and clock."""
    settings = [*TEST_SETTINGS, f"lakehouse={config.lakehouse}", f"mlflow.tracking_uri={config.mlflow.tracking_uri}",
                "score.tiers_by=probability", "score.high=0.8", "score.medium=0.3", "stream.clock=events"]
    return [a for s in settings for a in ("--set", s)]


def _delta_commit(config: Config, table: str, version: int) -> Path:
    return Path(config.lakehouse) / table / "_delta_log" / f"{version:020d}.json"


def _kill_after_commit(config: Config, table: str, version: int) -> None:
    """Start ``churn-spark stream --trigger available-now`` in a process of its own and SIGKILL
    it as soon as ``table``'s Delta commit ``version`` exists."""
    process = subprocess.Popen(
        [sys.executable, "-m", "churn_spark.cli", "stream", "--trigger", "available-now", *_overrides(config)],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    marker = _delta_commit(config, table, version)
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL  # killed, not finished
    assert marker.exists()


@pytest.mark.slow
def test_a_query_killed_mid_batch_restarts_from_its_checkpoint_without_duplicates_or_gaps(
        spark: SparkSession, streaming: Config) -> None:
    """SIGKILL the stream process right after a micro-batch's user_daily merge (its warnings not
    written yet), then, restarted, right after the same batch's warnings merge (its offset not
    committed yet); the last restart from the checkpoint re-runs the batch again and ends with
    exactly the uninterrupted warnings, none twice."""
    store_events(spark, streaming, HISTORY, [profile("u1"), profile("u2")])
    run_scoring(spark, streaming, DAY)
    run_stream(spark, streaming, "available-now")  # the checkpoint, at the history
    store_events(spark, streaming, BAD_DAY)

    _kill_after_commit(streaming, "user_daily", tables.version(spark, streaming, "user_daily") + 1)
    assert _warnings(spark, streaming) == []  # mid-batch: the day's rows merged, no warning yet
    _kill_after_commit(streaming, "warnings", tables.version(spark, streaming, "warnings") + 1)

    run_stream(spark, streaming, "available-now")
    kinds = [(w[0], w[2], w[6]) for w in _warnings(spark, streaming)]
    assert kinds == [("u1", "high_tier", "high"), ("u1", "probability_rise", "high")]
    stored = tables.read_table(spark, streaming, "warnings")
    assert stored.count() == stored.select("warning_id").distinct().count() == 2


@pytest.mark.slow
def test_landing_files_are_ingested_by_the_contract_and_warned_on(
        spark: SparkSession, streaming: Config, tmp_path: Path) -> None:
    """A landing folder watched by the stream: valid rows become the events batch ingest stores,
    a bad row goes to quarantine with its reason, and the bad day is warned on."""
    store_events(spark, streaming, HISTORY, [profile("u1"), profile("u2")])
    run_scoring(spark, streaming, DAY)
    run_stream(spark, streaming, "available-now")
    rows = [
        {"event_id": "b1", "user_id": "u1", "event_time": "2026-03-10T08:15:00Z", "event_type": "service"},
        {"event_id": "b2", "user_id": "u1", "event_time": "2026-03-10T08:40:00Z", "event_type": "refund",
         "product_id": "p1", "price": 60.0, "quantity": 1},
        {"event_id": "b3", "user_id": "u2", "event_time": "2026-03-10T12:00:00Z", "event_type": "purchase",
         "product_id": "p1", "price": 25.0, "quantity": 1},
        {"event_id": "b4", "user_id": "u3", "event_time": "2026-03-10T12:30:00Z", "event_type": "teleport"},
    ]
    landing = tmp_path / "incoming"
    write_jsonl(landing / "events-0001.jsonl", rows)

    run = run_stream(spark, streaming, "available-now", landing=str(landing))

    assert run.files_ingested == 1
    streamed = tables.read_table(spark, streaming, "events").where("source = 'contract'").drop("ingested_at")
    alone = streaming.model_copy(update={"lakehouse": str(tmp_path / "batch")})
    ingest(spark, alone, str(landing))
    assertDataFrameEqual(streamed, tables.read_table(spark, alone, "events").drop("ingested_at"))
    assert sorted(r["event_id"] for r in streamed.collect()) == ["b1", "b2", "b3"]
    (rejected,) = tables.read_table(spark, streaming, "quarantine").collect()
    assert '"teleport"' in rejected["record"] and rejected["reasons"] == ["unknown_event_type"]
    assert [(w[0], w[2]) for w in _warnings(spark, streaming)] == [("u1", "high_tier"), ("u1", "probability_rise")]
