"""Hyperparameter search (``churn-spark tune``): Optuna on the driver, a real training run per trial.

For each network kind (``tune.models``, else ``train.models``) one Optuna study maximises the
validation PR-AUC. TPE draws ``job.SEARCHED``: the learning rate and weight decay on log scales,
the batch size from a list. A trial trains through ``train.launcher`` exactly as ``train`` does,
on the same split, preprocessing and feed, one epoch per launch. After each epoch the trial
reports its validation PR-AUC, and the median pruner stops a trial whose PR-AUC trails the
median of the earlier trials at that epoch (once ``tune.startup_trials`` trials have run and
the trial is past ``tune.warmup_epochs``). The next launch resumes from the trial's checkpoint,
so a pruned trial costs only the epochs it ran; each launch starts the launcher's processes
anew, which is the price of pruning between epochs with any launcher. A trial also ends where
``train`` would stop it early (validation ROC-AUC, ``train.patience``).

MLflow: one parent run per kind ("tune <kind>"), every trial a nested run with its parameters,
its per-epoch validation metrics and its state (complete or pruned).

Time-boxed: no trial starts once the kind's share of ``tune.timeout_minutes`` has passed (the
time left, shared equally by the kinds still to search); the running trial finishes.

The best configuration of each kind is written back to ``models/tuned.json`` under the
lakehouse (``job.write_tuned``), which ``train`` uses unless ``train.use_tuned`` is off.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from churn_spark import storage
from churn_spark.config import Config
from churn_spark.train import job
from churn_spark.train.distributed import launch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Search:
    """One kind's search: its best configuration and what it took."""

    kind: str
    params: dict[str, Any]  # the best trial's SEARCHED values
    valid_pr_auc: float  # the best trial's best epoch
    trials: int
    pruned: int
    seconds: float  # to a tenth, as printed and as written to tuned.json

    def line(self) -> str:
        chosen = ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                           for name, value in self.params.items())
        return (f"tune {self.kind}: {self.trials} trials ({self.pruned} pruned) in {self.seconds:.0f} s; best "
                f"validation PR-AUC {self.valid_pr_auc:.4f} with {chosen}; written to models/{job.TUNED}")


def run_tuning(spark: SparkSession, config: Config) -> list[Search]:
    """Search each network kind's hyperparameters (see the module docstring); write the best back.

    Raises
    ------
    InputError, StorageError
        As ``train``, before any trial runs.
    """
    import mlflow

    from churn_spark.train.tracking import tracking_uri

    kinds = config.tune.models or config.train.models
    prepared = job.prepare(spark, config, kinds)
    deadline = time.monotonic() + config.tune.timeout_minutes * 60
    scratch = storage.join(config.location("cache"), f"tune-{uuid.uuid4().hex}")  # the trials' checkpoints
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    mlflow.set_experiment(config.mlflow.experiment)
    converters = job.open_converters(prepared, config)
    try:
        searches = []
        for left, kind in zip(range(len(kinds), 0, -1), kinds, strict=True):
            searches.append(_search(config, kind, prepared, converters, storage.join(scratch, kind),
                                    max((deadline - time.monotonic()) / left, 1e-3)))
            job.write_tuned(config, kind, _found(searches[-1]))
        return searches
    finally:
        for converter in converters.values():
            converter.delete()
        if storage.exists(scratch, config):
            storage.remove(scratch, config)


def _search(config: Config, kind: str, prepared: job.Prepared, converters: dict, scratch: str,
            seconds: float) -> Search:
    import mlflow
    import optuna

    settings = config.tune
    study = optuna.create_study(
        study_name=f"tune {kind}", direction="maximize", sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials,
                                           n_warmup_steps=settings.warmup_epochs))
    began = time.perf_counter()
    with mlflow.start_run(run_name=f"tune {kind}"):
        mlflow.log_params({"kind": kind, "trials": settings.trials, "timeout_seconds": round(seconds, 1),
                           "learning_rate_range": list(settings.learning_rate),
                           "weight_decay_range": list(settings.weight_decay), "batch_sizes": settings.batch_size,
                           "epochs": config.train.epochs, "launcher": config.train.launcher})
        study.optimize(lambda trial: _trial(trial, config, kind, prepared, converters, scratch),
                       n_trials=settings.trials, timeout=seconds, gc_after_trial=False)
        states = [trial.state for trial in study.trials]
        search = Search(kind, dict(study.best_params), float(study.best_value), len(states),
                        states.count(optuna.trial.TrialState.PRUNED), round(time.perf_counter() - began, 1))
        mlflow.log_params({f"best_{name}": value for name, value in search.params.items()})
        mlflow.log_metrics({"best_valid_pr_auc": search.valid_pr_auc, "pruned_trials": search.pruned})
    log.info(search.line())
    return search


def _trial(trial: Any, config: Config, kind: str, prepared: job.Prepared, converters: dict, scratch: str) -> float:
    """One training run with the trial's hyperparameters, an epoch per launch; its best
    validation PR-AUC (``optuna.TrialPruned`` once the pruner stops it)."""
    import mlflow
    import optuna

    settings = config.tune
    params = {"learning_rate": trial.suggest_float("learning_rate", *settings.learning_rate, log=True),
              "weight_decay": trial.suggest_float("weight_decay", *settings.weight_decay, log=True),
              "batch_size": trial.suggest_categorical("batch_size", settings.batch_size)}
    checkpoint = storage.join(scratch, f"trial-{trial.number}.ckpt")
    best = float("-inf")
    with mlflow.start_run(run_name=f"{kind} trial {trial.number}", nested=True):
        mlflow.log_params(params)
        try:
            for epoch in range(config.train.epochs):
                summary = launch(job.network_params(config, kind, prepared, converters, checkpoint, resume=True,
                                                    epochs=epoch + 1, **params),
                                 config.train.launcher, config.train.num_processes, config.train.local_mode)
                if summary["epochs_run"] <= epoch:  # stopped early (patience): no epoch ran
                    break
                row = summary["history"][-1]
                mlflow.log_metrics({"loss": row["loss"], "valid_roc_auc": row["valid_auc"],
                                    "valid_pr_auc": row["valid_pr_auc"]}, step=epoch)
                best = max(best, row["valid_pr_auc"])
                trial.report(row["valid_pr_auc"], epoch)
                if trial.should_prune():
                    mlflow.set_tag("state", "pruned")
                    raise optuna.TrialPruned(f"epoch {epoch}: validation PR-AUC {row['valid_pr_auc']:.4f} trails "
                                             f"the median of earlier trials")
            mlflow.set_tag("state", "complete")
            mlflow.log_metric("best_valid_pr_auc", best)
            return best
        finally:
            for path in (checkpoint, checkpoint + ".best"):
                if storage.exists(path, config):
                    storage.remove(path, config)


def _found(search: Search) -> dict[str, Any]:
    """What ``models/tuned.json`` keeps of a search."""
    return {"params": search.params, "valid_pr_auc": search.valid_pr_auc, "trials": search.trials,
            "pruned": search.pruned, "seconds": search.seconds,
            "tuned": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
