"""``churn-spark tune``: real trials through the launcher on a small separable training_set, nested
MLflow runs, pruning, the time box, and ``train`` using what the search wrote back."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pyspark.sql import SparkSession

from churn_spark import storage
from churn_spark.cli import main
from churn_spark.config import Config, load_config
from churn_spark.train.job import hyperparameters, run_training
from churn_spark.train.tracking import tracking_uri
from tests.builders import SMALL_SNAPSHOTS, write_small_training_set
from tests.conftest import ROOT, TEST_SETTINGS

# TPE's first draws with this seed: a learning rate of 0.016, which learns the set's signal within
# an epoch, then 3.2e-6, whose first epoch stays where the initial weights are: below the median
# of the trials before it, pruned there.
SEARCH = ["tune.models=[lr]", "tune.trials=4", "tune.startup_trials=1", "tune.warmup_epochs=0", "tune.seed=6",
          "tune.learning_rate=[1e-6,0.05]", "tune.batch_size=[8,16]"]


@pytest.fixture
def tuning(config: Config, tmp_path: Path) -> list[str]:
    """``--set`` arguments: LR only, one process, three epochs, a registry of the test's own."""
    settings = [f"lakehouse={config.lakehouse}", f"mlflow.tracking_uri={tmp_path / 'mlruns'}",
                "train.models=[lr]", "train.launcher=single", "train.num_processes=1", "train.epochs=3",
                "train.patience=3", "train.use_gpu=false", *SEARCH]
    return [a for s in settings for a in ("--set", s)]


def _config(arguments: list[str], *more: str) -> Config:
    return load_config(ROOT / "conf" / "local.yaml", [*TEST_SETTINGS, *arguments[1::2], *more])


def _trials(config: Config) -> tuple[mlflow.entities.Run, list[mlflow.entities.Run]]:
    """The newest "tune lr" run and its nested trial runs, oldest first."""
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    runs = mlflow.search_runs(experiment_names=[config.mlflow.experiment], output_format="list",
                              order_by=["attributes.start_time ASC"])
    parent = [r for r in runs if r.info.run_name == "tune lr"][-1]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


def test_tune_writes_back_the_best_trial_of_a_pruned_search_and_train_uses_it(
        spark: SparkSession, tuning: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tuning)
    write_small_training_set(spark, config, {day: [0, 1] * 60 for day in SMALL_SNAPSHOTS},
                             signal="days_since_last_purchase")

    assert main(["tune", *tuning]) == 0
    tuned = json.loads(storage.read_text(storage.join(config.location("models"), "tuned.json")))
    assert list(tuned) == ["lr"]
    best = tuned["lr"]
    parent, trials = _trials(config)
    assert capsys.readouterr().out.splitlines() == [
        f"tune lr: 4 trials ({best['pruned']} pruned) in {best['seconds']:.0f} s; best validation PR-AUC "
        f"{best['valid_pr_auc']:.4f} with learning_rate={best['params']['learning_rate']:.3g}, "
        f"weight_decay={best['params']['weight_decay']:.3g}, batch_size={best['params']['batch_size']}; "
        f"written to models/tuned.json"]

    # Every trial a nested run of its own: its draws, its epochs' validation PR-AUC, its state.
    assert len(trials) == best["trials"] == 4
    drawn = [{k: float(v) for k, v in t.data.params.items()} for t in trials]
    assert all(1e-6 <= d["learning_rate"] <= 0.05 and 1e-7 <= d["weight_decay"] <= 1e-2
               and d["batch_size"] in (8, 16) for d in drawn)
    client = mlflow.MlflowClient()
    curves = [[m.value for m in client.get_metric_history(t.info.run_id, "valid_pr_auc")] for t in trials]
    states = [t.data.tags["state"] for t in trials]
    assert states.count("pruned") == best["pruned"] >= 1
    # The first trial ran to the end; a pruned one stopped at the epoch where it trailed the median
    # of the completed trials before it.
    assert (states[0], len(curves[0])) == ("complete", 3)
    for number, (state, curve) in enumerate(zip(states, curves, strict=True)):
        if state == "pruned":
            step = len(curve) - 1
            earlier = [c[step] for c, s in zip(curves[:number], states, strict=False) if s == "complete"]
            assert curve[step] < np.median(earlier)
    # The best trial is the one written back, and its parent run records it.
    winner = max((t for t, s in zip(trials, states, strict=True) if s == "complete"),
                 key=lambda t: t.data.metrics["best_valid_pr_auc"])
    assert {k: float(v) for k, v in winner.data.params.items()} == pytest.approx(best["params"])
    assert winner.data.metrics["best_valid_pr_auc"] == pytest.approx(best["valid_pr_auc"]) == max(curves[
        trials.index(winner)])
    assert parent.data.metrics["pruned_trials"] == best["pruned"]
    assert not [p for p in Path(storage.local_path(config.location("cache"))).rglob("*.ckpt*")]

    # train takes the tuned values (and records them); with use_tuned off, its own.
    result = run_training(spark, config)
    assert result["summaries"]["lr"]["hyperparameters"] == best["params"]
    logged = mlflow.get_run(mlflow.search_runs(experiment_names=[config.mlflow.experiment], output_format="list",
                                               filter_string=f"attributes.run_name = '{result['run']}'")[0]
                            .info.run_id).data.params
    assert float(logged["lr_learning_rate"]) == pytest.approx(best["params"]["learning_rate"])
    assert hyperparameters(_config(tuning, "train.use_tuned=false"), "lr") == {
        "learning_rate": 0.01, "weight_decay": 0.0, "batch_size": 256}
    assert hyperparameters(config, "mlp") == {"learning_rate": 0.01, "weight_decay": 0.0, "batch_size": 256}


def test_no_trial_starts_after_the_time_box(spark: SparkSession, tuning: list[str]) -> None:
    config = _config(tuning)
    write_small_training_set(spark, config, {day: [0, 1] * 6 for day in SMALL_SNAPSHOTS})
    assert main(["tune", *tuning, "--set", "tune.timeout_minutes=0.0001"]) == 0
    tuned = json.loads(storage.read_text(storage.join(config.location("models"), "tuned.json")))
    assert (tuned["lr"]["trials"], len(_trials(config)[1])) == (1, 1)  # the one that started finished
