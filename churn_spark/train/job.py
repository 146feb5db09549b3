"""The train job: split by time, preprocess in Spark, train each network with DDP, fit LightGBM
on the same split, calibrate each on the validation snapshot, average the calibrated models
(the ensemble, calibrated in turn), evaluate all on the test snapshot, and register the
champion: the model with the best validation ROC-AUC, whatever its kind."""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from churn_spark import drift, storage, tables
from churn_spark.calibrate import fit_calibration
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.evaluate import choose_threshold, write_report
from churn_spark.features import catalogue
from churn_spark.train import preprocess
from churn_spark.train.bundle import BOOSTER, ENSEMBLE, Bundle, BoosterModel
from churn_spark.train.distributed import launch
from churn_spark.snapshots import read_daily
from churn_spark.train.model import SEQUENCE_MODELS
from churn_spark.train.sequence import CHANNELS, SEQUENCE, attach
from churn_spark.train.split import Split, choose_split

log = logging.getLogger(__name__)


def run_training(spark: SparkSession, config: Config, resume: bool = False) -> dict[str, Any]:
    """Train every configured model and the baseline; write the run, the report and metrics.json.

    Everything is checked before anything is created: a refused run leaves no run folder, and
    ``models/LATEST`` moves (atomically) only once a run has completed. ``resume`` continues the
    newest run when it was interrupted (started, never completed), else starts a new one.

    Raises
    ------
    InputError
        Before anything is written: no training_set, no valid split, a split holding one class.
    StorageError
        Before anything is written: the lakehouse cannot hold the run.
    """
    from churn_spark.train.tracking import track_run

    prepared = prepare(spark, config)
    split, prep, parts = prepared.split, prepared.prep, prepared.parts
    run_dir = _run_dir(config, split, resume)  # the first thing created, once every check has passed
    converters = open_converters(prepared, config)
    valid_rows = parts["valid"].toPandas()
    summaries, members = {}, []
    try:
        for kind in config.train.models:
            params = network_params(config, kind, prepared, converters, storage.join(run_dir, f"{kind}.ckpt"),
                                    resume)
            began = time.perf_counter()
            summaries[kind] = {**launch(params, config.train.launcher, config.train.num_processes,
                                        config.train.local_mode), "seconds": time.perf_counter() - began,
                              "hyperparameters": {name: params[name] for name in SEARCHED}}
            bundle = Bundle.load_checkpoint(summaries[kind]["checkpoint"], kind, prep, config,
                                            sequence_spec(config) if kind in SEQUENCE_MODELS else None)
            members.append(_calibrate(bundle, valid_rows, config))
            members[-1].save(storage.join(run_dir, f"{kind}.pt"), config)
    finally:
        for converter in converters.values():
            converter.delete()
    began = time.perf_counter()
    booster = _fit_lightgbm(parts["train"], valid_rows, prep, config)
    summaries[BOOSTER] = {"seconds": time.perf_counter() - began, "trees": booster.state["trees"]}
    members.append(_calibrate(booster, valid_rows, config))
    members[-1].save(storage.join(run_dir, f"{BOOSTER}.pt"), config)
    if ENSEMBLE in candidates(config):
        ensemble = _calibrate(Bundle.ensemble(members), valid_rows, config)
        ensemble.save(storage.join(run_dir, f"{ENSEMBLE}.pt"), config)
    _freeze_references(spark, config, run_dir, prepared)
    # What really ran (world size, device, epochs, seconds), beside the configuration that asked for it.
    storage.write_text(storage.join(run_dir, "training.json"), json.dumps(summaries, indent=2), config)
    metrics = evaluate_run(spark, config, run_dir)
    version = track_run(config, split, summaries, metrics, run_dir)
    _complete(config, run_dir, version)
    return {"run": posixpath.basename(run_dir), "split": split, "metrics": metrics, "summaries": summaries,
            "version": version}


@dataclass(frozen=True)
class Prepared:
    """A training_set split by time and its preprocessing, fitted on the training part."""

    split: Split
    prep: preprocess.Preprocessing
    parts: dict[str, DataFrame]  # train, valid, test: raw feature rows with their label
    positives: int  # in the training part
    negatives: int


def prepare(spark: SparkSession, config: Config, kinds: Sequence[str] | None = None) -> Prepared:
    """Check that a run can be written and the training_set split, split it, fit preprocessing;
    creates nothing. The parts hold the daily sequence where one of ``kinds`` (default
    ``train.models``) reads it.

    Raises
    ------
    InputError, StorageError
        As ``run_training``.
    """
    for folder in ("models", "reports", "cache"):
        tables.check_location(config, folder, write=True)
    if not tables.table_exists(spark, config, "training_set"):
        raise InputError(f"{config.table('training_set')}: no training_set; run churn-spark labels first")
    training = with_sequences(spark, config, tables.read_table(spark, config, "training_set"),
                              any(kind in SEQUENCE_MODELS for kind in kinds or config.train.models))
    split = _split(training, config)
    features = catalogue(config.features)
    numeric = [f.name for f in features if f.dtype != "string"]
    categorical = [f.name for f in features if f.dtype == "string"]
    part = split.part()
    parts = {name: training.where(part == name) for name in ("train", "valid", "test")}
    positives, negatives = _class_counts(training, split)
    prep = preprocess.fit(parts["train"], numeric, categorical, config.labels.horizon_days, config.train.bgnbd_inputs)
    return Prepared(split, prep, parts, positives, negatives)


def sequence_spec(config: Config) -> dict[str, Any]:
    """The daily-sequence input a sequence model trains on (``Bundle.sequence``)."""
    return {"days": config.train.sequence_days, "channels": list(CHANNELS)}


def with_sequences(spark: SparkSession, config: Config, rows: DataFrame, wanted: bool,
                   spec: dict[str, Any] | None = None) -> DataFrame:
    """``rows`` with each row's daily sequence (``train.sequence``) where ``wanted``; the
    ``user_daily`` rollup is brought up to date first."""
    if not wanted:
        return rows
    spec = spec or sequence_spec(config)
    return attach(rows, read_daily(spark, config), spec["days"], spec["channels"])


def open_converters(prepared: Prepared, config: Config) -> dict[str, Any]:
    """The training and validation parts as model inputs, cached where every rank can read them
    (delete each when done)."""
    from churn_spark.train.feed import make_converter

    cache = config.location("cache")  # a URI every training rank can read, wherever it runs
    keep = ("label", SEQUENCE) if SEQUENCE in prepared.parts["train"].columns else ("label",)
    return {name: make_converter(preprocess.apply(prepared.parts[name], prepared.prep, keep=keep).repartition(
        max(2, config.train.num_processes)), cache, feed=config.train.feed,
        storage_options=storage.storage_options(cache, config)) for name in ("train", "valid")}


def evaluate_run(spark: SparkSession, config: Config, run_dir: str | None = None) -> dict:
    """Score the run's models (and the recency-only reference) on its validation and test
    snapshots; write the report under ``<lakehouse>/reports/<run>`` and ``reports/latest``.
    Its ``champion`` is the model of best validation ROC-AUC (the one ``train`` registers)."""
    models = config.location("models")
    if run_dir is None:
        if not storage.exists(storage.join(models, LATEST), config):
            raise InputError(f"{models}: no training run to evaluate; run churn-spark train first")
        name = storage.read_text(storage.join(models, LATEST), config).strip()
        run_dir = storage.join(models, name)
        if not storage.exists(storage.join(run_dir, COMPLETE), config):  # LATEST of an older version
            raise InputError(f"{run_dir}: training run {name} did not complete; run churn-spark train "
                             f"(--resume continues it)")
    saved = json.loads(storage.read_text(storage.join(run_dir, "split.json"), config))
    split = Split(*(tuple(dt.date.fromisoformat(d) for d in saved[k]) for k in ("train", "valid", "test")),
                  saved.get("valid_users", 0.0))  # a run of an older churn-spark validated by snapshot
    bundles = {}
    for kind in candidates(config):
        path = storage.join(run_dir, f"{kind}.pt")
        if kind == ENSEMBLE and not storage.exists(path, config):
            continue  # a run of a churn-spark from before the ensemble: its models stand on their own
        if not storage.exists(path, config):
            raise InputError(f"{run_dir}: no {kind}.pt (a run of an older churn-spark?); run churn-spark train")
        bundles[kind] = Bundle.load(path, config)
    spec = next((b.sequence for b in bundles.values() if b.sequence), None)
    training = with_sequences(spark, config, tables.read_table(spark, config, "training_set"), spec is not None, spec)
    rows = {name: training.where(split.part() == name).toPandas() for name in ("valid", "test")}
    scores, before = {}, {}
    for kind, bundle in bundles.items():
        model = bundle.model()
        scores[kind] = {name: bundle.predict_proba(part, model) for name, part in rows.items()}
        before[kind] = bundle.predict_proba(rows["test"], model, calibrated=False)
    # The references to beat: days since the last purchase, scaled to [0, 1] (only its order
    # matters), and BG/NBD's probability of no purchase in the horizon, fitted on the training part.
    history = float(config.features.history_days)
    scores["recency"] = {name: np.minimum(part["days_since_last_purchase"].to_numpy(float) / history, 1.0)
                         for name, part in rows.items()}
    state = bundle.preprocessing.bgnbd  # one fit per run, in every bundle (None: too few buyers)
    if state is not None:
        scores["bgnbd"] = {name: preprocess.bgnbd_inputs(state, part)["bgnbd_p_no_purchase"].to_numpy()
                           for name, part in rows.items()}
    return _report(config, split, rows, scores, before, run_dir)


def _freeze_references(spark: SparkSession, config: Config, run_dir: str, prepared: Prepared) -> None:
    """Store in each model's bundle its drift reference (``churn_spark.drift``): the bins and
    shares of the test snapshot's features, and of the model's probabilities on those rows."""
    test, prep = prepared.parts["test"], prepared.prep
    features = drift.reference(test, [c for c in prep.columns() if c not in prep.categorical], list(prep.categorical))
    rows = test.toPandas()
    for kind in candidates(config):
        path = storage.join(run_dir, f"{kind}.pt")
        bundle = Bundle.load(path, config)
        probabilities = pd.DataFrame({drift.SCORE: bundle.predict_proba(rows)})
        bundle.reference = drift.with_score(features, spark.createDataFrame(probabilities))
        bundle.save(path, config)


def candidates(config: Config) -> list[str]:
    """The kinds a run trains, each a candidate champion: the configured networks, LightGBM,
    and the ensemble of them all (where there are two or more)."""
    kinds = [*config.train.models, BOOSTER]
    return [*kinds, ENSEMBLE] if len(kinds) > 1 else kinds


def _split(training: DataFrame, config: Config) -> Split:
    available = [r.snapshot_date for r in training.select("snapshot_date").distinct().collect()]
    settings = config.train
    return choose_split(available, config.labels.horizon_days, settings.train_snapshots,
                        settings.valid_snapshots, settings.test_snapshots, settings.valid_users)


LATEST = "LATEST"  # under models/: the name of the newest completed run
COMPLETE = "complete.json"  # in a run folder: written last, once the run is registered
_RUN_NAME = re.compile(r"\d{8}T\d{6}")


def _run_dir(config: Config, split: Split, resume: bool) -> str:
    """The interrupted run to resume, or a new run folder holding its plan (``split.json``)."""
    models = config.location("models")
    if resume:
        interrupted = _interrupted_run(config, models)
        if interrupted is not None:
            planned = json.loads(storage.read_text(storage.join(interrupted, "split.json"), config))
            if planned != _split_json(split):
                raise InputError(f"{interrupted}: the interrupted run was split as {planned}, training_set now "
                                 f"splits as {_split_json(split)}; train without --resume")
            log.info("resuming the interrupted run %s", posixpath.basename(interrupted))
            return interrupted
        log.info("%s: no interrupted run to resume; starting a new one", models)
    run_dir = storage.join(models, dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S"))
    storage.makedirs(run_dir, config)
    # Written whole or not at all: from now on, the run is resumable.
    storage.write_atomically(storage.join(run_dir, "split.json"), json.dumps(_split_json(split)), config)
    return run_dir


def _interrupted_run(config: Config, models: str) -> str | None:
    """The newest run when it started (has its plan) and never completed; a folder without a
    plan (created and abandoned before training began) is no run at all."""
    runs = [storage.join(models, name) for name in storage.listdir(models, config) if _RUN_NAME.fullmatch(name)]
    runs = [run for run in runs if storage.exists(storage.join(run, "split.json"), config)]
    return runs[-1] if runs and not storage.exists(storage.join(runs[-1], COMPLETE), config) else None


def _complete(config: Config, run_dir: str, version: str) -> None:
    """Mark the run complete, then point ``LATEST`` at it (each file written whole or not at all)."""
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    name = posixpath.basename(run_dir)
    storage.write_atomically(storage.join(run_dir, COMPLETE),
                             json.dumps({"run": name, "version": version, "completed": stamp}), config)
    storage.write_atomically(storage.join(config.location("models"), LATEST), name, config)


def _split_json(split: Split) -> dict[str, Any]:
    return {**{k: [str(d) for d in getattr(split, k)] for k in ("train", "valid", "test")},
            "valid_users": split.valid_users}


def _class_counts(training: DataFrame, split: Split) -> tuple[int, int]:
    """The training part's positives and negatives, once every part is known to hold both
    classes (a one-class part leaves a loss, a threshold or a ROC-AUC undefined)."""
    rows = (training.select(split.part().alias("part"), "label").where(F.col("part").isNotNull()).groupBy("part")
            .agg(F.sum("label").alias("p"), F.count(F.lit(1)).alias("n")).collect())
    counts = {r["part"]: (int(r["p"] or 0), int(r["n"])) for r in rows}
    for name in ("train", "valid", "test"):
        positives, total = counts.get(name, (0, 0))
        if positives in (0, total):
            dates = ", ".join(map(str, split.dates(name)))
            held = "no users" if total == 0 else f"{total} users, {'all' if positives else 'none'} churned"
            raise InputError(f"train: the {name} snapshots ({dates}) hold one class only ({held}); "
                             f"label more snapshot dates")
    return counts["train"][0], counts["train"][1] - counts["train"][0]


SEARCHED = ("learning_rate", "weight_decay", "batch_size")  # what ``churn-spark tune`` searches, per network
TUNED = "tuned.json"  # under models/: the best of each network's search, which ``train`` uses


def hyperparameters(config: Config, kind: str) -> dict[str, Any]:
    """The ``SEARCHED`` settings a network of ``kind`` trains with: ``train``'s, replaced by the
    best ``churn-spark tune`` found for the kind (``models/tuned.json``) unless ``train.use_tuned``
    is off."""
    chosen = {name: getattr(config.train, name) for name in SEARCHED}
    tuned = read_tuned(config).get(kind, {}) if config.train.use_tuned else {}
    return {**chosen, **{name: tuned["params"][name] for name in SEARCHED if name in tuned.get("params", {})}}


def read_tuned(config: Config) -> dict[str, Any]:
    """What ``churn-spark tune`` wrote back: per network kind its best ``params`` and how they were
    found (empty before any search)."""
    path = storage.join(config.location("models"), TUNED)
    return json.loads(storage.read_text(path, config)) if storage.exists(path, config) else {}


def write_tuned(config: Config, kind: str, found: dict[str, Any]) -> None:
    """Record the best configuration of ``kind`` (the other kinds' stay), whole or not at all."""
    tuned = {**read_tuned(config), kind: found}
    storage.makedirs(config.location("models"), config)
    storage.write_atomically(storage.join(config.location("models"), TUNED), json.dumps(tuned, indent=2), config)


def network_params(config: Config, kind: str, prepared: Prepared, converters: dict, checkpoint: str, resume: bool,
                   **overrides: Any) -> dict[str, Any]:
    """``train_fn``'s parameters for a network of ``kind`` (``hyperparameters`` unless overridden),
    checkpointing to ``checkpoint`` (a URI every rank can write)."""
    settings, prep = config.train, prepared.prep
    spec = sequence_spec(config)
    sequence = ({"sequence_column": SEQUENCE, "shape": {"days": spec["days"], "channels": len(spec["channels"])}}
                if kind in SEQUENCE_MODELS else {})
    return {**sequence, **dict(model=kind, numeric=list(prep.numeric), categorical=list(prep.categorical),
                   cardinalities=prep.cardinalities(), seed=settings.seed, **hyperparameters(config, kind),
                   pos_weight=prepared.negatives / prepared.positives, epochs=settings.epochs,
                   patience=settings.patience, train=converters["train"], valid=converters["valid"],
                   use_gpu=settings.use_gpu, checkpoint=checkpoint, resume=resume,
                   storage_options=storage.storage_options(checkpoint, config),
                   extra_state={"preprocessing": prep.to_dict()}), **overrides}


def _threshold(config: Config, labels: np.ndarray, scores: np.ndarray) -> float:
    settings = config.train
    return choose_threshold(labels, scores, settings.threshold_rule, settings.cost_false_negative,
                            settings.cost_false_positive)


def _calibrate(bundle: Bundle, valid: pd.DataFrame, config: Config) -> Bundle:
    """``bundle`` with its calibration fitted on the validation rows, and its decision threshold
    chosen on the calibrated validation probabilities."""
    labels = valid["label"].to_numpy(int)
    model = bundle.model()
    bundle.calibration = fit_calibration(labels, bundle.predict_proba(valid, model, calibrated=False),
                                         config.train.calibration, seed=config.train.seed)
    bundle.threshold = _threshold(config, labels, bundle.predict_proba(valid, model))
    return bundle


def _fit_lightgbm(train: DataFrame, valid: pd.DataFrame, prep: preprocess.Preprocessing, config: Config) -> Bundle:
    """LightGBM on the same features and split, trained on the driver (sampled above
    ``train.baseline_max_rows``), early-stopped on validation log loss; as a bundle that reads
    the inputs every kind reads (``BoosterModel.inputs``: category codes in the training split's
    vocabulary)."""
    train = train.drop(SEQUENCE)  # the booster reads the feature row alone
    total = train.count()
    cap = config.train.baseline_max_rows
    frame = (train if total <= cap else train.sample(fraction=cap / total, seed=config.train.seed)).toPandas()

    def inputs(rows: pd.DataFrame) -> np.ndarray:
        return BoosterModel.inputs(*preprocess.raw_arrays(rows, prep))

    names = [*prep.numeric, *prep.categorical]
    categorical = list(range(len(prep.numeric), len(names)))
    model = lgb.LGBMClassifier(n_estimators=1000, learning_rate=0.05, num_leaves=31, subsample=0.8,
                               subsample_freq=1, colsample_bytree=0.8, random_state=config.train.seed,
                               verbose=-1)
    model.fit(inputs(frame), frame["label"].to_numpy(int), feature_name=names, categorical_feature=categorical,
              eval_set=[(inputs(valid), valid["label"].to_numpy(int))],
              callbacks=[lgb.early_stopping(50, verbose=False)])
    trees = int(model.booster_.best_iteration or model.n_estimators)
    return Bundle(BOOSTER, {"model": model.booster_.model_to_string(num_iteration=trees), "trees": trees}, prep)


def _report(config: Config, split: Split, rows: dict[str, pd.DataFrame], scores: dict[str, dict],
            before: dict[str, np.ndarray], run_dir: str) -> dict:
    valid_y, test_y = rows["valid"]["label"].to_numpy(int), rows["test"]["label"].to_numpy(int)
    thresholds = {name: _threshold(config, valid_y, s["valid"]) for name, s in scores.items()}
    test = {name: (test_y, s["test"]) for name, s in scores.items()}
    valid_auc = {name: float(roc_auc_score(valid_y, scores[name]["valid"])) for name in before}
    calibration = {kind: Bundle.load(storage.join(run_dir, f"{kind}.pt"), config).calibration.method
                   for kind in before}
    facts = {"champion": max(valid_auc, key=valid_auc.get), "valid_roc_auc": valid_auc, "calibration": calibration}
    reports = config.location("reports")
    report = storage.join(reports, posixpath.basename(run_dir))
    metrics = write_report(test, thresholds, split.test[0], report, config, before, facts, config.train.bootstrap)
    storage.copy_folder(report, storage.join(reports, "latest"), config)
    return metrics
