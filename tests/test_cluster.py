"""spark-submit on a real Spark standalone cluster: a master and two 1-core workers on 127.0.0.1.

``scripts/standalone_cluster.py`` starts the cluster and submits ingest, features, labels, train
(TorchDistributor with ``local_mode=false``: the two DDP ranks are barrier tasks on the
executors) and score, each with ``conf/cluster.yaml`` and its storage moved to a temporary
folder. The landing files are written first with the suite's session (the same generator the
generate job runs). The checks read what the jobs left: Delta tables, the training run's record,
and the train job's Spark event log.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark import storage
from churn_spark.config import Config, load_config
from churn_spark.pipeline import generate_landing
from churn_spark.tables import read_table
from tests.conftest import ROOT

USERS, DAYS = 150, 180


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


@pytest.fixture(scope="module")
def cluster_run(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> ClusterRun:
    work = tmp_path_factory.mktemp("standalone")
    config = load_config(cluster_script.CLUSTER_CONF, cluster_script.pipeline_overrides(work, USERS, DAYS))
    generate_landing(spark, config.generate, str(work / "landing"))
    package = cluster_script.build_package(work / "dist")
    try:
        with cluster_script.standalone_cluster(work) as cluster:
            run = cluster_script.run_pipeline(cluster, package, USERS, DAYS, generate=False)
    except cluster_script.ClusterError as err:
        pytest.fail(f"the loopback standalone cluster did not start: {err}", pytrace=False)
    except cluster_script.SubmitError as err:
        pytest.fail(f"a job failed on the standalone cluster: {err}", pytrace=False)
    return ClusterRun(config, run, work)


def test_every_job_ran_as_an_application_of_the_cluster(cluster_run: ClusterRun) -> None:
    apps = cluster_run.run.apps
    assert sorted(apps) == ["features", "ingest", "labels", "score", "train"]
    assert {job: app["state"] for job, app in apps.items()} == dict.fromkeys(apps, "FINISHED")


def test_events_match_the_ingest_log(spark: SparkSession, cluster_run: ClusterRun) -> None:
    config = cluster_run.config
    (logged,) = read_table(spark, config, "ingest_log").where("dataset = 'events'").collect()
    assert logged.rows_written == read_table(spark, config, "events").count() > 0
    assert logged.path == str(cluster_run.work / "landing" / "events")


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
    models = cluster_run.config.location("models")
    record = json.loads(storage.read_text(f"{models}/{storage.read_text(f'{models}/LATEST').strip()}/training.json"))
    assert {kind: (s["world_size"], s["device"]) for kind, s in record.items()} == {
        "lr": (2, "cpu"), "mlp": (2, "cpu")}
    # One barrier stage per model, each with one task per rank, on both executors (one per worker).
    tasks = cluster_script.barrier_tasks(cluster_run.work, cluster_run.run.apps["train"]["id"])
    assert sorted((t["Executor ID"], t["Failed"]) for t in tasks) == [("0", False), ("0", False),
                                                                     ("1", False), ("1", False)]
    metrics = json.loads(storage.read_text(f"{cluster_run.config.location('reports')}/latest/metrics.json"))
    assert set(metrics["models"]) == {"lr", "mlp", "lightgbm", "recency"}


def test_scores_cover_every_user_known_at_the_scored_date(spark: SparkSession, cluster_run: ClusterRun) -> None:
    config, scored = cluster_run.config, cluster_run.run.scored
    on_date = f"snapshot_date = DATE'{scored}'"
    scores = read_table(spark, config, "churn_scores").where(on_date)
    known = read_table(spark, config, "user_features").where(on_date).select("user_id")
    assert scores.count() == scores.select("user_id").distinct().count()  # one row per user
    assert sorted(r.user_id for r in scores.select("user_id").collect()) == sorted(r.user_id for r in known.collect())
    assert scores.where("churn_probability < 0 OR churn_probability > 1").count() == 0
    assert {r.model_version for r in scores.select("model_version").distinct().collect()} == {"1"}
