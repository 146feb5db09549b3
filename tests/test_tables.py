"""The table owner under stress: concurrent writers in real processes, and a lakehouse the disk
refuses (a file in the way, a read-only file system, a full disk)."""

from __future__ import annotations

import datetime as dt
import errno
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession

from churn_spark import tables
from churn_spark.cli import main
from churn_spark.config import Config, load_config
from churn_spark.errors import StorageError
from churn_spark.ingest import ingest
from churn_spark.score import Scorer, run_scoring
from churn_spark.tables import storage_failure
from tests.builders import A, B, C, LAPSED, T1, T2, frame, lr_bundle, scores_at, store_features
from tests.conftest import ROOT, TEST_SETTINGS

# A scoring worker in a process of its own (its own JVM, local[1]): it builds its session, says
# it is ready, and scores once told to go, so that both workers' transactions overlap.
_WORKER = """
import datetime as dt, logging, pathlib, sys, time
from churn_spark.config import load_config
from churn_spark.score import run_scoring
from churn_spark.spark import get_spark
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
ready, go, day, *overrides = sys.argv[1:]
config = load_config("conf/local.yaml", overrides)
spark = get_spark(config.spark)
spark.range(1).count()
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.02)
print(run_scoring(spark, config, dt.date.fromisoformat(day)).users)
"""


def _score_concurrently(config: Config, days: tuple[dt.date, dt.date],
                        folder: Path) -> list[subprocess.CompletedProcess]:
    overrides = [*TEST_SETTINGS, "spark.master=local[1]", "spark.settings.spark.driver.memory=1g",
                 f"lakehouse={config.lakehouse}", f"mlflow.tracking_uri={config.mlflow.tracking_uri}",
                 "score.tiers_by=probability", "score.high=0.8", "score.medium=0.3"]
    go = folder / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(folder / f"ready{k}"), str(go), str(day),
                                 *overrides], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for k, day in enumerate(days)]
    deadline = time.monotonic() + 300
    while not all((folder / f"ready{k}").exists() for k in range(len(days))):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers), \
            [w.communicate()[1][-3000:] for w in workers if w.poll() is not None]
        time.sleep(0.05)
    go.touch()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=600)
        results.append(subprocess.CompletedProcess(worker.args, worker.returncode, out, err))
    return results


def _retried(results: list[subprocess.CompletedProcess]) -> bool:
    """Whether a worker lost a commit to the other and retried (the race really happened)."""
    return any("a concurrent commit won" in r.stderr for r in results)


@pytest.mark.slow
def test_two_score_runs_of_one_date_leave_that_dates_rows_once(
        spark: SparkSession, registered: Config, tmp_path: Path) -> None:
    """Both rescore T1 at once: the loser of the commit (ConcurrentAppendException on today's
    code, a traceback) retries its idempotent replaceWhere; T1 holds each user once."""
    store_features(spark, registered, T1, {"a": A, "b": B, "c": C, "l": LAPSED})
    run_scoring(spark, registered, T1)
    before = scores_at(spark, registered, T1)

    results = _score_concurrently(registered, (T1, T1), tmp_path)

    assert [(r.returncode, r.stdout.splitlines()[-1:]) for r in results] == [(0, ["4"]), (0, ["4"])], \
        [r.stderr[-3000:] for r in results]
    assert _retried(results)
    pd.testing.assert_frame_equal(scores_at(spark, registered, T1), before)
    assert tables.read_table(spark, registered, "churn_scores").count() == 4


@pytest.mark.slow
def test_two_runs_creating_the_scores_table_both_keep_their_rows(
        spark: SparkSession, registered: Config, tmp_path: Path) -> None:
    """No churn_scores table yet; T1 and T2 are scored at once: both create it (one loses with
    ProtocolChangedException today, and its rows with it) and both dates are stored."""
    store_features(spark, registered, T1, {"a": A, "b": B})
    store_features(spark, registered, T2, {"a": B, "b": A, "c": C})

    results = _score_concurrently(registered, (T1, T2), tmp_path)

    assert [(r.returncode, r.stdout.splitlines()[-1:]) for r in results] == [(0, ["2"]), (0, ["3"])], \
        [r.stderr[-3000:] for r in results]
    assert _retried(results)
    expected = {T1: (frame([A, B]), ["high", "low"]), T2: (frame([B, A, C]), ["low", "high", "medium"])}
    for day, (features, tiers) in expected.items():
        got = scores_at(spark, registered, day)
        assert got["user_id"].tolist() == (["a", "b"] if day == T1 else ["a", "b", "c"])
        assert got["risk_tier"].tolist() == tiers
        assert got["churn_probability"].tolist() == pytest.approx(
            Scorer(lr_bundle()).predict(features)["churn_probability"].tolist(), abs=1e-12)
    assert tables.read_table(spark, registered, "churn_scores").count() == 5


# --- a lakehouse the disk refuses ----------------------------------------------------------------


def _landing(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text('{"event_id": "e1", "user_id": "u1", "event_time": "2026-02-27T12:00:00Z", '
                    '"event_type": "purchase", "price": 12.0, "quantity": 1}\n')
    return path


def _settings(lakehouse: Path, *extra: str) -> list[str]:
    return [a for s in [*TEST_SETTINGS, f"lakehouse={lakehouse}", *extra] for a in ("--set", s)]


def test_a_lakehouse_that_is_a_file_is_named_in_one_line(
        spark: SparkSession, registered: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Today: ingest ends in a Delta traceback and score says "no events table; run churn-spark
    ingest first"; both name the file that stands where the lakehouse should be."""
    lakehouse = tmp_path / "lakehouse-file"
    lakehouse.write_text("not a folder\n")
    message = f"churn-spark: error: lakehouse {lakehouse}: {lakehouse} is a file, not a folder"

    assert main(["ingest", "--events", str(_landing(tmp_path)), "--format", "jsonl", *_settings(lakehouse)]) == 2
    assert capsys.readouterr().err.splitlines() == [message]
    assert main(["score", "--as-of", "2026-03-01", "--no-alerts", *_settings(
        lakehouse, f"mlflow.tracking_uri={registered.mlflow.tracking_uri}")]) == 2
    assert capsys.readouterr().err.splitlines() == [message]
    assert lakehouse.read_text() == "not a folder\n"

    under = load_config(ROOT / "conf" / "local.yaml", [*TEST_SETTINGS, f"lakehouse={lakehouse / 'inner'}"])
    with pytest.raises(StorageError, match=f"^lakehouse {lakehouse}/inner: {lakehouse} is a file, not a folder$"):
        ingest(spark, under, str(_landing(tmp_path)), None, "jsonl")


def test_a_full_disk_is_told_apart_from_other_errors(spark: SparkSession) -> None:
    """The mapping of a full disk, from real errors: Python's and the JVM's own writes to
    /dev/full (the reproduction on a real small file system is the next test)."""
    with pytest.raises(OSError) as python_error:
        with open("/dev/full", "w") as handle:
            handle.write("x")
            handle.flush()
    assert python_error.value.errno == errno.ENOSPC
    assert storage_failure(python_error.value) == "no space left on device"
    stream = spark.sparkContext._jvm.java.io.FileOutputStream("/dev/full")
    with pytest.raises(Exception) as java_error:
        stream.write(bytearray(b"x"))
    stream.close()
    assert storage_failure(java_error.value) == "no space left on device"
    assert storage_failure(ValueError("a plain bug")) is None


def _unshare_mounts() -> bool:
    """Whether this machine lets a process mount a file system of its own (a private mount
    namespace; the test suite runs as root). chmod cannot make a folder read-only to root, and
    a read-only bind mount of the real disk would be seen by every process here: a private
    namespace holding a read-only tmpfs and a 4 KiB tmpfs gives a real EROFS and a real ENOSPC
    to the one process under test, and to nothing else."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro,size=4k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_mounts(), reason="needs unshare -m and mount (a private mount namespace)")
@pytest.mark.slow
def test_a_read_only_and_a_full_lakehouse_are_one_line_each(tmp_path: Path) -> None:
    readonly, full = tmp_path / "readonly", tmp_path / "full"
    readonly.mkdir()
    full.mkdir()
    events = _landing(tmp_path)
    script = tmp_path / "ingest_twice.py"
    script.write_text("from churn_spark.cli import main\n" + "".join(
        f"print('exit', main(['ingest', '--events', {str(events)!r}, '--format', 'jsonl', "
        f"*{_settings(lakehouse)!r}]), flush=True)\n" for lakehouse in (readonly, full)))
    shell = (f"mount -t tmpfs -o ro,size=64k tmpfs {readonly} && mount -t tmpfs -o size=4k tmpfs {full} && "
             f"exec {sys.executable} {script}")
    result = subprocess.run(["unshare", "-m", "sh", "-c", shell], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert [line for line in result.stdout.splitlines() if line.startswith("exit")] == ["exit 2", "exit 2"], \
        result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("churn-spark: error:")]
    assert errors[0] == f"churn-spark: error: lakehouse {readonly}: {readonly} is not writable (read-only)"
    assert len(errors) == 2
    assert re.fullmatch(f"churn-spark: error: file:{full}/(quarantine|events|ingest_log): no space left on device",
                        errors[1]), errors[1]
    assert not any("Traceback" in line for line in result.stderr.splitlines())
