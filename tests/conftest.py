"""One local Spark session with Delta for the whole suite, a fresh lakehouse per test, and the
hand-set model of tests/builders.py registered in MLflow."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from churn_spark.config import Config, load_config
from churn_spark.spark import get_spark, hadoop_aws_package
from tests.builders import lr_bundle, register

if TYPE_CHECKING:
    from tests.object_store import ObjectStore

# Timestamps come back to Python as naive local datetimes: make local mean UTC, as in Spark.
os.environ["TZ"] = "UTC"
time.tzset()

ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL = ROOT.parent / "shared" / "data" / "online_retail" / "onlineretail.parquet"

TEST_SETTINGS = [
    "spark.master=local[2]",
    "spark.settings.spark.sql.shuffle.partitions=2",
    "spark.settings.spark.default.parallelism=2",
    "spark.settings.spark.ui.enabled=false",
    "spark.settings.spark.ui.showConsoleProgress=false",
    "spark.settings.spark.databricks.delta.snapshotPartitions=1",
    "spark.settings.spark.driver.memory=3g",
    # Adaptive execution re-plans each shuffle stage as a job of its own: on the suite's few rows
    # that is only overhead (about a fifth of a feature or scoring test). The jobs' results do not
    # depend on it; conf/local.yaml and conf/cluster.yaml keep it on.
    "spark.settings.spark.sql.adaptive.enabled=false",
]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pytest.ini): a worker per core, at most one per 4 GiB of memory (each holds a
    Spark driver of 3g and starts CLI processes of its own), and never more than 4."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # no psutil on the newest line
    return max(1, min(cores, memory // 2**32, 4))


@pytest.fixture(scope="session", autouse=True)
def _repository_root() -> None:
    """Run from the repository root, as the README does (conf/ is found there)."""
    os.chdir(ROOT)


@pytest.fixture(scope="session")
def spark(_repository_root: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkSession]:
    warehouse = tmp_path_factory.mktemp("warehouse")  # metastore tables, away from the repository
    settings = [*TEST_SETTINGS, f"spark.settings.spark.sql.warehouse.dir={warehouse}",
                # s3a:// for the object-store tests, which read back what their jobs wrote there.
                f"spark.settings.spark.jars.packages={hadoop_aws_package()}"]
    # Workers start their sessions one at a time: the first resolves Delta's and hadoop-aws's
    # jars into the shared Ivy cache, the others find them there (no two writers of the cache).
    with open(tmp_path_factory.getbasetemp().parent / "spark-start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        session = get_spark(load_config(ROOT / "conf" / "local.yaml", settings).spark)
    yield session
    session.stop()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """The local default, writing to a lakehouse of this test's own."""
    return load_config(ROOT / "conf" / "local.yaml",
                       [*TEST_SETTINGS, f"lakehouse={tmp_path / 'lakehouse'}",
                        f"landing={tmp_path / 'landing'}"])


@pytest.fixture
def registered(config: Config, tmp_path: Path) -> Config:
    """A config whose MLflow registry holds the hand-set model as version 1 (probability tiers:
    high >= 0.8, medium >= 0.3; every alert gets the rule table's action: no exploration)."""
    config = config.model_copy(update={
        "mlflow": config.mlflow.model_copy(update={"tracking_uri": str(tmp_path / "mlruns")}),
        "score": config.score.model_copy(update={"tiers_by": "probability", "high": 0.8, "medium": 0.3}),
        "policy": config.policy.model_copy(update={"exploration": 0.0}),
    })
    assert register(config, lr_bundle(), tmp_path / "lr.pt") == "1"
    return config


@pytest.fixture(scope="module")
def store() -> Iterator["ObjectStore"]:
    """An S3-compatible server on loopback with a bucket of its own (moto; see tests/object_store.py)."""
    from tests.object_store import object_store  # moto is imported only where a store is needed

    with object_store() as running:
        yield running
