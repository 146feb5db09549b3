"""The README's commands as a user runs them: the console script, its errors, run-all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from churn_spark.config import load_config
from churn_spark.tables import read_table
from tests.conftest import ROOT, TEST_SETTINGS

CLI = str(Path(sys.executable).parent / "churn-spark")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _module(*args: str) -> subprocess.CompletedProcess:
    """``python -m churn_spark.cli`` on this checkout's code."""
    return subprocess.run([sys.executable, "-m", "churn_spark.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_default_output_is_the_jobs_own_lines_and_verbose_adds_sparks(tmp_path: Path) -> None:
    """Without --verbose: no Ivy block, no log4j line, no JSON stack trace before a refusal."""
    settings = [a for s in [*TEST_SETTINGS, f"lakehouse={tmp_path / 'lakehouse'}"] for a in ("--set", s)]
    good = tmp_path / "events.jsonl"
    good.write_text('{"event_id": "e1", "user_id": "u1", "event_time": "2026-02-01T10:00:00Z", "event_type": "view"}\n')
    bad = tmp_path / "retail.csv"  # a CustomerID the online_retail mapping cannot cast (ANSI mode)
    bad.write_text("InvoiceNo,StockCode,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
                   "536365,85123A,6,2010-12-01 08:26:00,2.55,abc,United Kingdom\n")
    refusal = (f"churn-spark: error: {bad}: source online_retail cannot read these rows ([CAST_INVALID_INPUT] "
               "The value 'abc' of the type")

    result = _module("ingest", "--events", str(good), *settings)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == "events: read 1, written 1, duplicates skipped 0, quarantined 0\n"
    assert result.stderr == ""  # the result is printed once, on stdout; no Spark or Ivy line

    result = _module("ingest", "--events", str(bad), "--source", "online_retail", "--format", "csv", *settings)
    assert (result.returncode, result.stdout) == (2, "")
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(refusal), result.stderr[:2000]

    result = _module("ingest", "--events", str(bad), "--source", "online_retail", "--format", "csv", "--verbose",
                     *settings)
    assert result.returncode == 2
    assert ":: resolving dependencies ::" in result.stderr  # Ivy
    assert "at org.apache.spark.sql.errors.QueryExecutionErrors" in result.stderr  # the stack trace
    assert result.stderr.splitlines()[-1].startswith(refusal)


def test_bad_config_is_one_line_and_nothing_runs(tmp_path: Path) -> None:
    result = _run("ingest", "--events", "x.jsonl", "--set", "spark.mastr=local", "--set",
                  f"lakehouse={tmp_path}")
    assert result.returncode == 2
    assert result.stderr == "churn-spark: error: conf/local.yaml: spark.mastr: unknown key\n"
    assert list(tmp_path.iterdir()) == []


def test_missing_landing_path_is_one_line(tmp_path: Path) -> None:
    result = _run("ingest", "--events", str(tmp_path / "nowhere.jsonl"), "--set", f"lakehouse={tmp_path}",
                  *[a for s in TEST_SETTINGS for a in ("--set", s)])
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == f"churn-spark: error: {tmp_path}/nowhere.jsonl: no such file or folder"


@pytest.mark.slow
def test_run_all_on_file_uris_leaves_the_lakehouse_tables_and_nothing_in_the_working_folder(
        spark: SparkSession, tmp_path: Path) -> None:
    """Every location a ``file:///`` URI, run from an empty folder: Delta once refused such a
    lakehouse (two spellings of one table), and nothing may land in the working folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    overrides = [*TEST_SETTINGS, f"lakehouse=file://{tmp_path}/lakehouse", f"landing=file://{tmp_path}/landing",
                 "generate.users=120", "generate.days=180", "generate.dirty_fraction=0.02",
                 "train.epochs=2", f"mlflow.tracking_uri=file://{tmp_path}/mlruns"]
    result = subprocess.run(
        [sys.executable, "-m", "churn_spark.cli", "run-all", "--conf", str(ROOT / "conf" / "local.yaml"),
         *[a for s in overrides for a in ("--set", s)]],
        cwd=cwd, capture_output=True, text=True, timeout=1800, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[13/13] stream done" in result.stderr
    assert "stream: 1 micro-batch(es)" in result.stderr
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "lakehouse", "landing", "mlruns"]
    assert "Top alert reasons" in (tmp_path / "lakehouse" / "reports" / "manager.html").read_text()

    config = load_config(ROOT / "conf" / "local.yaml", overrides)
    # The demo's landing files, then the world's response to the alerts' actions.
    events_log, *responses = read_table(spark, config, "ingest_log").where("dataset = 'events'").orderBy(
        "batch_time").collect()
    # Spark lists a local file as file:/<path> however the location was spelled.
    assert all(r.path.startswith(f"file:{tmp_path}/landing/responses/") for r in responses)
    stored = read_table(spark, config, "events").count()
    quarantined = read_table(spark, config, "quarantine").where("dataset = 'events'").count()
    assert events_log.rows_written + sum(r.rows_written for r in responses) == stored > 0
    assert events_log.rows_read == events_log.rows_written + events_log.duplicates_skipped + events_log.quarantined
    assert 0 < quarantined <= events_log.quarantined
    metrics = json.loads((tmp_path / "lakehouse" / "reports" / "latest" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"lr", "mlp", "lightgbm", "ensemble", "recency", "bgnbd"}
    scored = read_table(spark, config, "churn_scores").groupBy("snapshot_date").count().orderBy("snapshot_date")
    users = read_table(spark, config, "user_features").groupBy("snapshot_date").count()
    labelled = read_table(spark, config, "training_set").agg({"snapshot_date": "max"}).first()[0]
    assert [tuple(r) for r in scored.collect()] == [
        tuple(r) for r in users.where(f"snapshot_date = DATE'{labelled}'").collect()
        + users.orderBy("snapshot_date").collect()[-2:]]
    # The labelled snapshot's run has matured: measured by monitor; every run measured its drift.
    assert [(r.snapshot_date, r.model_version) for r in read_table(spark, config, "model_performance").collect()] == [
        (labelled, "1")]
    drift = read_table(spark, config, "drift_metrics").where("feature = 'churn_probability'").orderBy("snapshot_date")
    assert [r.snapshot_date for r in drift.collect()] == [r.snapshot_date for r in scored.collect()]
    runs = read_table(spark, config, "score_runs").orderBy("snapshot_date").collect()
    assert [r.new_alerts for r in runs] == [read_table(spark, config, "alerts").where(
        f"snapshot_date = DATE'{r.snapshot_date}'").count() for r in runs]
    assert "new alerts:" in result.stderr
    # The labelled snapshot's assignments have matured: policy judged each policy, the truth beside.
    judged = read_table(spark, config, "policy_evaluation").where("action = 'all'")
    assert {(r.through_date, r.policy, r.estimator) for r in judged.collect()} == {
        (labelled, p, e) for p in ("none", "all_high_risk", "rules", "learnt") for e in ("ips", "snips", "dr", "truth")
    } | {(labelled, "logged", "observed"), (labelled, "logged", "truth")}


_IN_PROCESS = """
import contextlib, io, json, sys
from pyspark import SparkContext
from churn_spark.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([code, err.getvalue()])
print(json.dumps({"results": results, "jvm": SparkContext._gateway is not None}))
"""


def test_bad_mappings_are_refused_before_spark_starts(tmp_path: Path) -> None:
    """churn_spark.cli.main on bad mappings: exit 2, one line each, and no JVM was ever launched."""
    bad_key = tmp_path / "x.yaml"
    bad_key.write_text("read:\n  delimeter: ';'\nevents:\n  user_id: customer\n")
    java = tmp_path / "salt.yaml"
    java.write_text("events:\n  user_id: \"java_method('java.lang.System', 'getenv', 'CHURN_EXPORT_SALT')\"\n")
    unknown_column = tmp_path / "usr.yaml"
    unknown_column.write_text("events:\n  usr_id: customer\n")
    ingest = ["ingest", "--events", str(tmp_path / "events.jsonl"), "--set", f"lakehouse={tmp_path / 'lh'}"]
    cases = [[*ingest, "--source-file", str(bad_key)], [*ingest, "--source-file", str(java)],
             [*ingest, "--source-file", str(unknown_column)], [*ingest, "--source", "../../x"],
             [*ingest, "--source", "/abs/path"], [*ingest, "--source-file", str(tmp_path / "none.yaml")],
             ["ingest", "--events", str(tmp_path / "events.log"), "--set", f"lakehouse={tmp_path / 'lh'}"]]

    done = subprocess.run([sys.executable, "-c", _IN_PROCESS, json.dumps(cases)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    expected = [
        f"{bad_key}: read.delimeter: unknown key (expected one of delimiter, header, columns, encoding)",
        f"{java}: events.user_id: java_method() is not allowed (calls Java code)",
        f"{unknown_column}: events.usr_id: not a contract column (expected one of event_id, user_id, event_time, "
        "event_type, session_id, product_id, category, channel, review_text, price, quantity, dwell_seconds, rating)",
        "--source '../../x': expected the name of a mapping in conf/sources/ (letters, digits, _ and -); for a "
        "file elsewhere use --source-file PATH",
        "--source '/abs/path': expected the name of a mapping in conf/sources/ (letters, digits, _ and -); for a "
        "file elsewhere use --source-file PATH",
        f"--source-file {tmp_path / 'none.yaml'}: cannot read the mapping (No such file or directory)",
        f"{tmp_path / 'events.log'}: cannot tell the format from the file names; pass --format parquet|jsonl|csv",
    ]
    assert outcome["results"] == [[2, f"churn-spark: error: {line}\n"] for line in expected]
    assert outcome["jvm"] is False
    assert not (tmp_path / "lh").exists()


def test_source_and_source_file_are_one_or_the_other() -> None:
    result = _run("ingest", "--events", "x.jsonl", "--source", "online_retail", "--source-file", "x.yaml")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["churn-spark: error: churn-spark ingest: argument --source-file: "
                                          "not allowed with argument --source"]
