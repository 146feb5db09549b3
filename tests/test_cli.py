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


def _module(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m churn_spark.cli`` on this checkout's code, run in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "churn_spark.cli", *args], cwd=cwd, capture_output=True, text=True,
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
def test_file_uris_from_an_empty_folder_leave_the_tables_and_nothing_in_the_working_folder(
        spark: SparkSession, tmp_path: Path) -> None:
    """Every location a ``file://`` URI, each job run from an empty folder: Delta once refused such a
    lakehouse (two spellings of one table), and nothing may land in the working folder. (run-all's
    whole chain on URIs is tests/test_object_store.py's.)"""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    landing = f"file://{tmp_path}/landing/demo"
    overrides = [*TEST_SETTINGS, f"lakehouse=file://{tmp_path}/lakehouse", "generate.dirty_fraction=0.05"]

    def cli(*args: str) -> str:
        result = _module(*args, "--conf", str(ROOT / "conf" / "local.yaml"),
                         *[a for s in overrides for a in ("--set", s)], cwd=cwd)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    cli("generate", "--out", landing, "--users", "40", "--days", "40", "--start", "2026-01-01")
    ingested = cli("ingest", "--events", f"{landing}/events", "--users", f"{landing}/users")
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "lakehouse", "landing"]

    config = load_config(ROOT / "conf" / "local.yaml", overrides)
    log = read_table(spark, config, "ingest_log").where("dataset = 'events'").collect()
    assert [r.path for r in log] == [f"{landing}/events"]
    assert f"events: read {log[0].rows_read}, written {log[0].rows_written}," in ingested
    assert log[0].rows_read == log[0].rows_written + log[0].duplicates_skipped + log[0].quarantined
    assert 0 < read_table(spark, config, "quarantine").where("dataset = 'events'").count() <= log[0].quarantined
    assert read_table(spark, config, "events").count() == log[0].rows_written > 0
    (users,) = read_table(spark, config, "ingest_log").where("dataset = 'users'").collect()
    assert read_table(spark, config, "users").count() == users.rows_written > 0


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
