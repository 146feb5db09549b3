"""An ingest killed part-way (SIGKILL) leaves readable tables, and a re-run ends as if never killed."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from churn_spark.config import Config, load_config
from churn_spark.generate import GenerateSpec, generate, write_landing
from churn_spark.ingest import ingest
from churn_spark.tables import TABLES_WRITTEN_BY_INGEST, read_table, table_exists
from tests.conftest import ROOT, TEST_SETTINGS

pytestmark = pytest.mark.slow  # an ingest in a process of its own, killed, then two full ingests

# Columns that record when a batch ran, not what it stored.
BATCH_COLUMNS = ("ingested_at", "updated_at", "batch_id", "batch_time")


def _contents(spark: SparkSession, config: Config, name: str) -> list:
    frame = read_table(spark, config, name)
    return sorted(frame.drop(*BATCH_COLUMNS).collect(), key=str)


def _start_ingest(lakehouse: Path, landing: Path) -> subprocess.Popen:
    overrides = [a for s in [*TEST_SETTINGS, f"lakehouse={lakehouse}"] for a in ("--set", s)]
    return subprocess.Popen(
        [sys.executable, "-m", "churn_spark.cli", "ingest", "--events", str(landing / "events"),
         "--users", str(landing / "users"), "--format", "jsonl", *overrides],
        cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(process: subprocess.Popen, marker: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_killed_ingest_reruns_to_the_uninterrupted_result(spark: SparkSession, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    events, users = generate(spark, GenerateSpec(users=150, days=60, start=dt.date(2026, 1, 1), seed=3,
                                                 dirty_fraction=0.01))
    write_landing(events, users, str(landing), "jsonl", partitions=4)
    killed = load_config(ROOT / "conf" / "local.yaml", [*TEST_SETTINGS, f"lakehouse={tmp_path / 'killed'}"])
    clean = load_config(ROOT / "conf" / "local.yaml", [*TEST_SETTINGS, f"lakehouse={tmp_path / 'clean'}"])

    # Killed right after the events table is created: quarantine written, events mid-merge.
    process = _start_ingest(tmp_path / "killed", landing)
    _kill_when(process, tmp_path / "killed" / "events" / "_delta_log" / "00000000000000000000.json")
    assert process.returncode == -signal.SIGKILL
    for name in TABLES_WRITTEN_BY_INGEST:
        if table_exists(spark, killed, name):
            read_table(spark, killed, name).count()  # readable, whatever state it was left in

    ingest(spark, killed, str(landing / "events"), str(landing / "users"), "jsonl")
    ingest(spark, clean, str(landing / "events"), str(landing / "users"), "jsonl")

    for name in ("events", "users", "quarantine"):
        assert _contents(spark, killed, name) == _contents(spark, clean, name), name
    assert read_table(spark, clean, "events").count() > 1000
