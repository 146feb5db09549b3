"""spark-submit on a real Spark standalone cluster: a master and two 1-core workers on 127.0.0.1.

``scripts/standalone_cluster.py`` starts the cluster and submits ingest, features, labels, train
(TorchDistributor with ``local_mode=false``: the two DDP ranks are barrier tasks on the
executors) and score, each with ``conf/cluster.yaml`` and its lakehouse and landing in a bucket
of an S3-compatible server on loopback (``tests/object_store.py``), as on a real cluster where
the executors share no disk with the driver: they read the training cache from the store. The
landing files are written first with the suite's session (the same generator the generate job
runs). The checks read what the jobs left: Delta tables, the training run's record (with boto3),
and the train job's Spark event log.

The cluster's JVMs are stopped however a run ends: the last tests start a cluster under a
pytest of their own, end that pytest with SIGTERM, SIGINT or a failing test, and look for any
JVM left with the cluster's marker.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark.config import Config, load_config
from churn_spark.pipeline import generate_landing
from churn_spark.spark import hadoop_aws_package
from churn_spark.tables import read_table
from tests.conftest import ROOT
from tests.object_store import ObjectStore, point_session_at

# The cluster run alone takes over 15 min on a loaded 2-core machine: more than pytest.ini's 900 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

USERS, DAYS = 150, 180
JOB_TIMEOUT = 900.0  # seconds for one spark-submit: train took over 600 s in CI beside the other worker


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("standalone_cluster", ROOT / "scripts" / "standalone_cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


cluster_script = _load_script()


@dataclass(frozen=True)
class ClusterRun:
    """The finished pipeline: the config its jobs saw, what it ran, and where."""

    config: Config
    run: Any  # standalone_cluster.PipelineRun (the script is loaded from its file)
    work: Path
    store: ObjectStore

    def read(self, key: str) -> bytes:
        """An object under the lakehouse, from the bucket."""
        client, store = self.store.client(), self.store
        return client.get_object(Bucket=store.bucket, Key=f"{store.lakehouse.split('/', 3)[3]}/{key}")["Body"].read()


@pytest.fixture(scope="module")
def cluster_run(spark: SparkSession, store: ObjectStore, tmp_path_factory: pytest.TempPathFactory) -> ClusterRun:
    work = tmp_path_factory.mktemp("standalone")
    extra = [*store.overrides(), "train.feed=arrow",  # petastorm 0.13.1 cannot read a cache on S3 (test_object_store)
             # One network is enough to see DDP ranks run as barrier tasks on the executors: each
             # more model is another TorchDistributor run of minutes (test_train_job trains all three).
             "train.models=[mlp]"]
    config = load_config(cluster_script.CLUSTER_CONF, [*cluster_script.pipeline_overrides(work, USERS, DAYS), *extra])
    point_session_at(spark, store)
    generate_landing(spark, config.generate, config.landing)
    package = cluster_script.build_package(work / "dist")
    try:
        with cluster_script.standalone_cluster(work) as cluster:
            run = cluster_script.run_pipeline(cluster, package, USERS, DAYS, generate=False, extra=extra,
                                              packages=[hadoop_aws_package()], env=store.environment(),
                                              timeout=JOB_TIMEOUT)
    except cluster_script.ClusterError as err:
        pytest.fail(f"the loopback standalone cluster did not start: {err}", pytrace=False)
    except cluster_script.SubmitError as err:
        pytest.fail(f"a job failed on the standalone cluster: {err}", pytrace=False)
    return ClusterRun(config, run, work, store)


def test_every_job_ran_as_an_application_of_the_cluster(cluster_run: ClusterRun) -> None:
    apps = cluster_run.run.apps
    assert sorted(apps) == ["features", "ingest", "labels", "score", "stream", "train"]
    assert {job: app["state"] for job, app in apps.items()} == dict.fromkeys(apps, "FINISHED")


def test_events_match_the_ingest_log(spark: SparkSession, cluster_run: ClusterRun) -> None:
    config = cluster_run.config
    (logged,) = read_table(spark, config, "ingest_log").where("dataset = 'events'").collect()
    assert logged.rows_written == read_table(spark, config, "events").count() > 0
    assert logged.path == f"{cluster_run.store.landing}/events"


def test_features_and_labels_cover_every_snapshot(spark: SparkSession, cluster_run: ClusterRun) -> None:
    config, run = cluster_run.config, cluster_run.run
    features = read_table(spark, config, "user_features").groupBy("snapshot_date").agg(
        F.count(F.lit(1)).alias("rows"), F.countDistinct("user_id").alias("users"))
    per_date = {r.snapshot_date: (r.rows, r.users) for r in features.collect()}
    assert sorted(per_date) == run.featured
    assert all(rows == users > 0 for rows, users in per_date.values()), per_date  # one row per user
    labelled = read_table(spark, config, "training_set").groupBy("snapshot_date").count().collect()
    assert sorted(r.snapshot_date for r in labelled) == run.labelled
    assert all(r["count"] > 0 for r in labelled)


def test_training_ran_two_ddp_ranks_as_barrier_tasks_on_the_executors(cluster_run: ClusterRun) -> None:
    latest = cluster_run.read("models/LATEST").decode().strip()
    record = json.loads(cluster_run.read(f"models/{latest}/training.json"))
    assert record.pop("lightgbm")["trees"] >= 1  # the booster trains on the driver
    assert {kind: (s["world_size"], s["device"]) for kind, s in record.items()} == {"mlp": (2, "cpu")}
    # One barrier stage, with one task per rank, on both executors (one per worker).
    tasks = cluster_script.barrier_tasks(cluster_run.work, cluster_run.run.apps["train"]["id"])
    assert sorted((t["Executor ID"], t["Failed"]) for t in tasks) == [("0", False), ("1", False)]
    metrics = json.loads(cluster_run.read("reports/latest/metrics.json"))
    assert set(metrics["models"]) == {"mlp", "lightgbm", "ensemble", "recency", "bgnbd"}


def test_no_table_or_training_cache_was_written_to_a_local_disk(cluster_run: ClusterRun) -> None:
    """The drivers', workers' and executors' folders hold logs and scratch, no Parquet file."""
    assert sorted(str(p) for p in cluster_run.work.rglob("*.parquet")) == []


def test_scores_cover_every_user_known_at_the_scored_date(spark: SparkSession, cluster_run: ClusterRun) -> None:
    config, scored = cluster_run.config, cluster_run.run.scored
    on_date = f"snapshot_date = DATE'{scored}'"
    scores = read_table(spark, config, "churn_scores").where(on_date)
    known = read_table(spark, config, "user_features").where(on_date).select("user_id")
    assert scores.count() == scores.select("user_id").distinct().count()  # one row per user
    assert sorted(r.user_id for r in scores.select("user_id").collect()) == sorted(r.user_id for r in known.collect())
    assert scores.where("churn_probability < 0 OR churn_probability > 1").count() == 0
    assert {r.model_version for r in scores.select("model_version").distinct().collect()} == {"1"}


# A pytest of its own that holds a one-worker cluster in a fixture, then waits, or fails.
_HOLDER = """
import importlib.util, os, sys, time
from pathlib import Path
import pytest

spec = importlib.util.spec_from_file_location("standalone_cluster", os.environ["CLUSTER_SCRIPT"])
script = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = script
spec.loader.exec_module(script)


@pytest.fixture
def cluster(tmp_path):
    with script.standalone_cluster(tmp_path, workers=1, memory="512m") as running:
        yield running


def test_holds_the_cluster(cluster):
    Path(os.environ["READY"]).write_text(cluster.marker)
    if os.environ["END"] == "error":
        seen, deadline = Path(os.environ["SEEN"]), time.monotonic() + 300
        while not seen.exists() and time.monotonic() < deadline:  # the outer test has seen the JVMs
            time.sleep(0.2)
        raise RuntimeError("this test errors")
    time.sleep(600)
"""


def _jvms(marker: str) -> list[str]:
    """Command lines of the processes with ``-Dchurn.standalone=<marker>``: the cluster's JVMs."""
    found = subprocess.run(["pgrep", "-af", "--", f"-Dchurn.standalone={marker}"], capture_output=True, text=True)
    return found.stdout.splitlines()


@pytest.mark.parametrize("end", ["SIGTERM", "SIGINT", "error"])
def test_an_interrupted_or_failing_run_leaves_no_cluster_jvm(end: str, tmp_path: Path) -> None:
    (tmp_path / "test_holder.py").write_text(_HOLDER)
    ready = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLUSTER_SCRIPT": str(ROOT / "scripts" / "standalone_cluster.py"),
           "READY": str(ready), "SEEN": str(tmp_path / "seen"), "END": end}
    holder = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_holder.py"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists() and holder.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ready.exists(), f"the cluster never came up:\n{holder.communicate(timeout=60)[0][-3000:]}"
        marker = ready.read_text()
        running = _jvms(marker)
        assert sum("deploy.master.Master" in line for line in running) == 1, running
        assert sum("deploy.worker.Worker" in line for line in running) == 1, running
        (tmp_path / "seen").write_text("")  # the "error" holder fails only now, not before the JVMs are seen
        if end != "error":
            holder.send_signal(getattr(signal, end))
        output = holder.communicate(timeout=120)[0]
    finally:
        holder.kill()
        holder.wait()
    # pytest's exit codes: 2 for an interrupted session, 1 for a failed test.
    assert holder.returncode == (1 if end == "error" else 2), output[-3000:]
    assert _jvms(marker) == []
