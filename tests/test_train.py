"""DDP training through Petastorm: launchers, uneven shards, identical ranks, resume after a kill."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark.train.distributed import launch
from churn_spark.train.feed import make_converter
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # every test here trains in processes of its own (DDP ranks, torchrun, a killed run)


def _labelled(spark: SparkSession, seed: int, rows: int) -> DataFrame:
    """A learnable task: the label follows a logistic model of two numerics and a category."""
    base = spark.range(rows).select(F.randn(seed).alias("x1"), F.randn(seed + 1).alias("x2"),
                                    (F.rand(seed + 2) * 3).cast("int").alias("c"))
    logit = 2 * F.col("x1") - F.col("x2") + F.col("c") - 1
    return base.select("x1", "x2", "c", (F.rand(seed + 3) < 1 / (1 + F.exp(-logit))).cast("float").alias("label"))


@pytest.fixture(scope="module")
def data(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    cache = f"file://{tmp_path_factory.mktemp('petastorm')}"
    # Three row groups for two ranks: uneven shards on purpose (2 vs 1).
    train = make_converter(_labelled(spark, 1, 6000).repartition(3), cache)
    valid = make_converter(_labelled(spark, 9, 2000).repartition(2), cache)
    yield train, valid
    train.delete()
    valid.delete()


def _params(data, checkpoint: Path, model: str = "mlp", epochs: int = 3) -> dict:
    train, valid = data
    return dict(model=model, numeric=["x1", "x2"], categorical=["c"], cardinalities=[4], seed=3,
                learning_rate=0.05, batch_size=128, pos_weight=1.0, epochs=epochs, patience=10,
                train=train, valid=valid, checkpoint=str(checkpoint), use_gpu=False)


@pytest.mark.parametrize("model", ["lr", "mlp"])
def test_two_ddp_processes_through_torchdistributor_with_uneven_shards(data, tmp_path: Path, model: str) -> None:
    summary = launch(_params(data, tmp_path / "ckpt.pt", model), "torchdistributor", num_processes=2)
    assert (summary["world_size"], summary["epochs_run"], summary["device"]) == (2, 3, "cpu")
    assert summary["best_auc"] > 0.85  # the true model's AUC on this task is about 0.91
    assert Path(summary["checkpoint"]).exists()


def test_torchrun_ranks_return_the_same_result(data, tmp_path: Path) -> None:
    params, result = tmp_path / "params.pkl", tmp_path / "result.pkl"
    params.write_bytes(pickle.dumps(_params(data, tmp_path / "ckpt.pt", "lr", epochs=2)))
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "churn_spark.train.distributed", str(params), str(result)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = [pickle.loads((tmp_path / f"result.pkl.rank{r}").read_bytes()) for r in range(2)]
    assert ranks[0] == ranks[1] and ranks[0]["world_size"] == 2


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=False)["model"]


def test_resume_after_a_kill_reaches_the_uninterrupted_result(data, tmp_path: Path) -> None:
    killed = _params(data, tmp_path / "killed.pt", epochs=6)
    (tmp_path / "params.pkl").write_bytes(pickle.dumps(killed))
    process = subprocess.Popen([sys.executable, "-m", "churn_spark.train.distributed", str(tmp_path / "params.pkl"),
                                str(tmp_path / "result.pkl")], cwd=ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (tmp_path / "killed.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before_kill = torch.load(tmp_path / "killed.pt", weights_only=False)["state"]["epoch"]
    assert process.returncode == -signal.SIGKILL and 1 <= done_before_kill < 6

    resumed = launch({**killed, "resume": True})
    uninterrupted = launch(_params(data, tmp_path / "straight.pt", epochs=6))

    assert resumed["history"] == uninterrupted["history"]
    straight, again = _weights(tmp_path / "straight.pt"), _weights(tmp_path / "killed.pt")
    assert all(torch.equal(straight[name], again[name]) for name in straight)
