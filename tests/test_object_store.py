"""The whole pipeline on an S3-compatible object store: ``run-all`` with ``lakehouse: s3a://...``.

moto's server on loopback (``tests/object_store.py``) holds the bucket; Spark reaches it through
hadoop-aws (``spark.jars.packages``), the file artefacts through s3fs. One ``churn-spark run-all``
runs in a subprocess with an empty working folder and its own HOME and TMPDIR, training with
TorchDistributor on the executors (``local_mode: false``). MLflow's tracking store is not part of
the lakehouse (on a cluster it is a tracking server): here it is a local folder of its own.
Afterwards the bucket is listed with boto3 and the tables read back with the suite's session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from churn_spark.config import TABLES, Config, load_config
from churn_spark.tables import read_table
from tests.conftest import ROOT, TEST_SETTINGS
from tests.object_store import ObjectStore, point_session_at

# The run-all alone takes 12-15 min on a loaded 2-core machine: more than pytest.ini's 900 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# The pyarrow.dataset feed: petastorm 0.13.1 opens a cache on an object store through fsspec and
# then asks pyarrow 14 for ParquetDataset(validate_schema=...), which only its local/HDFS path takes.
# One network (test_train_job trains every kind): each more is another TorchDistributor run of minutes.
TRAIN = ["train.launcher=torchdistributor", "train.local_mode=false", "train.num_processes=2",
         "train.use_gpu=false", "train.epochs=2", "train.feed=arrow", "train.models=[lr]"]


@dataclass(frozen=True)
class StoreRun:
    """A finished run-all on the store: its config, output, and the local folders it was given."""

    store: ObjectStore
    config: Config
    stderr: str
    local: Path  # cwd/, home/, tmp/ (scratch/ below it) and mlruns/


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def store_run(spark: SparkSession, store: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> StoreRun:
    local = tmp_path_factory.mktemp("driver")
    for name in ("cwd", "home", "tmp/scratch", "mlruns"):
        (local / name).mkdir(parents=True)
    overrides = [*TEST_SETTINGS, *store.overrides(), *TRAIN,
                 f"spark.settings.spark.driver.extraJavaOptions=-Djava.io.tmpdir={local / 'tmp'}",
                 # Jars from the machine's Ivy cache, not a download into the empty HOME.
                 f"spark.settings.spark.jars.ivy={Path.home() / '.ivy2.5.2'}",
                 f"mlflow.tracking_uri={(local / 'mlruns').as_uri()}",
                 "generate.users=120", "generate.days=180", "generate.dirty_fraction=0.02"]
    env = {**os.environ, **store.environment(), "PYTHONPATH": str(ROOT), "HOME": str(local / "home"),
           "TMPDIR": str(local / "tmp"), "SPARK_LOCAL_DIRS": str(local / "tmp" / "scratch"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "churn_spark.cli", "run-all", "--conf", str(ROOT / "conf" / "local.yaml"),
         *[a for s in overrides for a in ("--set", s)]],
        cwd=local / "cwd", env=env, capture_output=True, text=True, timeout=1500)
    # TorchDistributor streams the ranks' output to the driver's stdout: both say why a run failed.
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    point_session_at(spark, store)
    return StoreRun(store, load_config(ROOT / "conf" / "local.yaml", overrides), result.stderr, local)


def test_every_table_is_a_delta_table_in_the_bucket(store_run: StoreRun) -> None:
    keys = store_run.store.keys("churn/")
    tables = sorted({key.split("/")[1] for key in keys if "/_delta_log/" in key})
    assert tables == sorted(TABLES)  # every table the project has
    assert all(f"churn/{table}/_delta_log/00000000000000000000.json" in keys for table in tables)


def test_tables_read_back_from_the_bucket(spark: SparkSession, store_run: StoreRun) -> None:
    config = store_run.config
    # The demo's landing files, then the world's response to the alerts' actions (run-all's respond).
    events_log, *responses = read_table(spark, config, "ingest_log").where("dataset = 'events'").orderBy(
        "batch_time").collect()
    assert events_log.path == f"{store_run.store.landing}/demo/events"
    assert all(r.path.startswith(f"{store_run.store.landing}/responses/") for r in responses)
    written = events_log.rows_written + sum(r.rows_written for r in responses)
    assert written == read_table(spark, config, "events").count() > 0
    assert events_log.rows_read == events_log.rows_written + events_log.duplicates_skipped + events_log.quarantined
    assert 0 < read_table(spark, config, "quarantine").where("dataset = 'events'").count() <= events_log.quarantined
    scored = read_table(spark, config, "churn_scores").groupBy("snapshot_date").count().orderBy("snapshot_date")
    users = read_table(spark, config, "user_features").groupBy("snapshot_date").count().orderBy("snapshot_date")
    # run-all scores the last labelled snapshot (whose window has closed: monitor measures it) and the last two.
    labelled = read_table(spark, config, "training_set").agg({"snapshot_date": "max"}).first()[0]
    assert [tuple(r) for r in scored.collect()] == [
        tuple(r) for r in users.where(f"snapshot_date = DATE'{labelled}'").collect() + users.collect()[-2:]]
    # The labelled snapshot's run has matured: measured by monitor; every run measured its drift.
    assert [(r.snapshot_date, r.model_version) for r in read_table(spark, config, "model_performance").collect()] == [
        (labelled, "1")]
    drift = read_table(spark, config, "drift_metrics").where("feature = 'churn_probability'").orderBy("snapshot_date")
    assert [r.snapshot_date for r in drift.collect()] == [r.snapshot_date for r in scored.collect()]
    runs = read_table(spark, config, "score_runs").orderBy("snapshot_date").collect()
    assert [r.new_alerts for r in runs] == [read_table(spark, config, "alerts").where(
        f"snapshot_date = DATE'{r.snapshot_date}'").count() for r in runs]
    # The labelled snapshot's assignments have matured: policy judged each policy, the truth beside.
    judged = read_table(spark, config, "policy_evaluation").where("action = 'all'")
    assert {(r.through_date, r.policy, r.estimator) for r in judged.collect()} == {
        (labelled, p, e) for p in ("none", "all_high_risk", "rules", "learnt") for e in ("ips", "snips", "dr", "truth")
    } | {(labelled, "logged", "observed"), (labelled, "logged", "truth")}


def test_run_all_said_what_each_step_did(store_run: StoreRun) -> None:
    assert "[13/13] stream done" in store_run.stderr
    assert "stream: 1 micro-batch(es)" in store_run.stderr
    assert "new alerts:" in store_run.stderr


def test_model_run_and_reports_are_in_the_bucket(store_run: StoreRun) -> None:
    store = store_run.store
    client = store.client()
    latest = client.get_object(Bucket=store.bucket, Key="churn/models/LATEST")["Body"].read().decode().strip()
    record = json.loads(client.get_object(Bucket=store.bucket, Key=f"churn/models/{latest}/training.json")["Body"]
                        .read())
    assert record.pop("lightgbm")["trees"] >= 1  # the booster trains on the driver
    assert {kind: (s["world_size"], s["device"]) for kind, s in record.items()} == {"lr": (2, "cpu")}
    metrics = json.loads(client.get_object(Bucket=store.bucket, Key="churn/reports/latest/metrics.json")["Body"]
                         .read())
    assert set(metrics["models"]) == {"lr", "lightgbm", "ensemble", "recency", "bgnbd"}
    report = client.get_object(Bucket=store.bucket, Key="churn/reports/manager.html")["Body"].read().decode()
    assert "Top alert reasons" in report


def test_landing_is_in_the_bucket(store_run: StoreRun) -> None:
    """run-all's demo files (JSON lines, conf/local.yaml's generate.format) went to the landing bucket."""
    store = store_run.store
    keys = store.keys("landing/demo/")
    parts = {name: [k for k in keys if k.startswith(f"landing/demo/{name}/part-")] for name in ("events", "users")}
    assert all(parts.values()) and all(k.endswith(".json") for k in parts["events"] + parts["users"]), keys
    first = store.client().get_object(Bucket=store.bucket, Key=parts["events"][0])["Body"].read().decode()
    assert {"event_id", "user_id", "event_time", "event_type"} <= set(json.loads(first.splitlines()[0]))


def test_nothing_written_to_the_working_folder_or_home(store_run: StoreRun) -> None:
    local = store_run.local
    assert list((local / "cwd").iterdir()) == []  # no file, and no folder either (./spark-warehouse, ./s3a:)
    # matplotlib's font cache is the one thing in HOME: a library's cache, not the pipeline's output.
    assert [f for f in _files(local / "home") if not f.startswith(".cache/matplotlib/")] == []
    assert any(f.endswith("meta.yaml") for f in _files(local / "mlruns"))  # MLflow's runs went to its store


def test_driver_temp_holds_only_sparks_scratch_and_the_console_log(store_run: StoreRun) -> None:
    """TMPDIR (also the JVM's java.io.tmpdir) holds Spark's and the JVM's scratch and churn-spark's
    console log and warehouse folder: no table, model, report or training cache."""
    files = _files(store_run.local / "tmp")
    assert [f for f in files if f.endswith((".parquet", ".json", ".pt", ".html", ".csv", ".txt"))
            and not f.startswith("churn-spark/")] == []
    assert [f for f in files if f.startswith("churn-spark/") and not f.endswith(".log")] == []
