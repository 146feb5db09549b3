"""End to end on generated data: train both networks with 2 DDP processes through Petastorm,
beat the recency-only score, write the report, register the model in MLflow."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import storage
from churn_spark.cli import main
from churn_spark.config import Config, load_config
from churn_spark.errors import InputError
from churn_spark.features import compute_features
from churn_spark.ingest import ingest
from churn_spark.pipeline import generate_landing
from churn_spark.score import run_scoring
from churn_spark.snapshots import run_labels
from churn_spark.tables import read_table
from churn_spark.train.bundle import Bundle
from churn_spark.train.job import evaluate_run, run_training
from churn_spark.snapshots import read_daily
from churn_spark.train.sequence import CHANNELS, attach
from churn_spark.train.tracking import register_bundle, tracking_uri
from tests.builders import SMALL_SNAPSHOTS, write_small_training_set
from tests.conftest import ROOT, TEST_SETTINGS

SNAPSHOTS = [dt.date(2026, 2, 26) + dt.timedelta(days=14 * k) for k in range(7)]


def local(location: str) -> Path:
    """The local folder of a lakehouse location (a ``file:`` URI here)."""
    return Path(storage.local_path(location))


@pytest.fixture(scope="module")
def trained(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict]:
    root = tmp_path_factory.mktemp("trainjob")
    config = load_config(ROOT / "conf" / "local.yaml", [
        *TEST_SETTINGS, f"lakehouse={root / 'lakehouse'}", f"mlflow.tracking_uri={root / 'mlruns'}",
        "generate.users=600", "generate.days=180", "train.epochs=10", "train.num_processes=2",
        "train.launcher=torchdistributor", "train.models=[lr,mlp,gru]", "train.sequence_days=30"])
    generate_landing(spark, config.generate, str(root / "landing"))
    ingest(spark, config, str(root / "landing" / "events"), str(root / "landing" / "users"), "jsonl")
    run_labels(spark, config, SNAPSHOTS)
    return config, run_training(spark, config)


@pytest.mark.slow
def test_networks_beat_the_recency_only_score(trained: tuple[Config, dict]) -> None:
    _, result = trained
    models = result["metrics"]["models"]
    networks = {kind: summary for kind, summary in result["summaries"].items() if kind != "lightgbm"}
    assert set(networks) == {"lr", "mlp", "gru"} and {s["world_size"] for s in networks.values()} == {2}
    assert models["mlp"]["roc_auc"] > models["recency"]["roc_auc"] + 0.03
    assert models["lr"]["roc_auc"] > models["recency"]["roc_auc"]
    assert models["lightgbm"]["roc_auc"] > models["recency"]["roc_auc"]
    assert 0.5 < models["bgnbd"]["roc_auc"] < models["lightgbm"]["roc_auc"]  # the buy-till-you-die reference
    assert models["ensemble"]["roc_auc"] > models["recency"]["roc_auc"] + 0.03  # the calibrated models averaged
    assert models["gru"]["roc_auc"] > models["recency"]["roc_auc"]  # the daily sequences beside the features


@pytest.mark.slow
def test_the_champion_is_the_best_on_validation_whatever_its_kind(trained: tuple[Config, dict]) -> None:
    """Every kind is a candidate; the registered version is the one of best validation ROC-AUC;
    each is calibrated on validation (the method stored in its bundle and the report), and the
    report gives each model's bootstrap 95% intervals and its ECE before calibration."""
    config, result = trained
    metrics = result["metrics"]
    valid = metrics["valid_roc_auc"]
    assert set(valid) == {"lr", "mlp", "gru", "lightgbm", "ensemble"}
    assert metrics["champion"] == max(valid, key=valid.get)
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    version = mlflow.MlflowClient().get_model_version(config.mlflow.model_name, result["version"])
    assert version.tags["kind"] == metrics["champion"]
    assert float(version.tags["valid_roc_auc"]) == pytest.approx(valid[metrics["champion"]])
    for kind in valid:
        values = metrics["models"][kind]
        assert values["roc_auc_low"] < values["roc_auc"] < values["roc_auc_high"]
        assert values["pr_auc_low"] < values["pr_auc"] < values["pr_auc_high"]
        assert 0 <= values["ece_before"] <= 1
        bundle = Bundle.load(f"{config.location('models')}/{result['run']}/{kind}.pt")
        assert bundle.calibration.method == metrics["calibration"][kind]
    assert version.tags["calibration"] == metrics["calibration"][metrics["champion"]]
    assert result["summaries"]["lightgbm"]["trees"] >= 1


@pytest.mark.slow
def test_report_and_evaluate_agree(spark: SparkSession, trained: tuple[Config, dict]) -> None:
    config, result = trained
    latest = local(config.location("reports")) / "latest"
    assert json.loads((latest / "metrics.json").read_text()) == result["metrics"]
    assert evaluate_run(spark, config) == result["metrics"]


def _with_sequences(spark: SparkSession, config: Config, bundle: Bundle, rows: DataFrame) -> pd.DataFrame:
    """``rows`` as pandas, with each row's daily sequence where ``bundle`` reads one."""
    if bundle.sequence:
        rows = attach(rows, read_daily(spark, config), bundle.sequence["days"])
    return rows.toPandas()


@pytest.mark.slow
def test_registered_model_scores_like_the_bundle(spark: SparkSession, trained: tuple[Config, dict]) -> None:
    config, result = trained
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    model = mlflow.pyfunc.load_model(f"models:/{config.mlflow.model_name}/{result['version']}")
    version = mlflow.MlflowClient().get_model_version(config.mlflow.model_name, result["version"])
    bundle = Bundle.load(f"{config.location('models')}/{result['run']}/{version.tags['kind']}.pt")
    rows = _with_sequences(spark, config, bundle,
                           read_table(spark, config, "training_set").where(F.col("snapshot_date") == SNAPSHOTS[-1]))
    assert np.allclose(model.predict(rows)["churn_probability"].to_numpy(), bundle.predict_proba(rows))
    assert float(version.tags["threshold"]) == pytest.approx(bundle.threshold)
    assert version.tags["features"].split(",") == bundle.features


@pytest.mark.slow
def test_scoring_job_gives_the_registered_models_output(spark: SparkSession, trained: tuple[Config, dict]) -> None:
    """The whole population at the last snapshot, features computed from the events (there is no
    user_features table here), scored by the Spark job: sampled users equal the pyfunc's output."""
    config, result = trained
    as_of = SNAPSHOTS[-1]
    scored = run_scoring(spark, config, as_of)
    assert scored.model_version == result["version"]
    scores = read_table(spark, config, "churn_scores").toPandas().set_index("user_id")
    events, users = read_table(spark, config, "events"), read_table(spark, config, "users")
    champion = Bundle.load(f"{config.location('models')}/{result['run']}/{result['metrics']['champion']}.pt")
    features = _with_sequences(spark, config, champion, compute_features(events, users, [as_of], config.features))
    assert len(scores) == len(features) == scored.users  # every user known at T, none dropped
    sample = features.sample(50, random_state=0)
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    model = mlflow.pyfunc.load_model(f"models:/{config.mlflow.model_name}/{result['version']}")
    direct = model.predict(sample)["churn_probability"].to_numpy()
    np.testing.assert_allclose(scores.loc[sample["user_id"], "churn_probability"].to_numpy(), direct, rtol=1e-6)
    tiers = scores["risk_tier"].value_counts()
    active = scores[scores["risk_tier"] != "lapsed"]
    assert tiers["high"] == pytest.approx(0.1 * len(active), abs=2)  # top 10% of the population
    assert (active.groupby("risk_tier")["churn_probability"].min()["high"]
            >= active.groupby("risk_tier")["churn_probability"].max()["medium"])
    assert scores["top_reasons"].map(len).max() == 3
    # The test snapshot is the model's drift reference: scored there, its population has not moved.
    bundle = Bundle.load(f"{config.location('models')}/{result['run']}/{result['metrics']['champion']}.pt")
    drift = read_table(spark, config, "drift_metrics").toPandas()
    assert [m["feature"] for m in scored.drift] == [*bundle.preprocessing.columns(), "churn_probability"]
    assert sorted(drift["feature"]) == sorted(m["feature"] for m in scored.drift)  # a table has no row order
    assert set(drift["rows"]) == {len(active)} and drift["psi"].max() < 0.01


@pytest.mark.slow
def test_the_sequence_model_is_served_by_the_scoring_job_as_trained(
        spark: SparkSession, trained: tuple[Config, dict], tmp_path: Path) -> None:
    """The run's GRU registered on its own: the scoring job attaches each user's last 30 days
    from the rollup and gives the bundle's probabilities on the same rows."""
    config, result = trained
    path = f"{config.location('models')}/{result['run']}/gru.pt"
    bundle = Bundle.load(path)
    assert bundle.sequence == {"days": 30, "channels": list(CHANNELS)}
    version = register_bundle(config, storage.local_path(path))
    as_of = SNAPSHOTS[-2]
    run_scoring(spark, config, as_of, version)
    scores = read_table(spark, config, "churn_scores").where(F.col("snapshot_date") == as_of).toPandas()
    events, users = read_table(spark, config, "events"), read_table(spark, config, "users")
    rows = attach(compute_features(events, users, [as_of], config.features), read_daily(spark, config), 30).toPandas()
    expected = dict(zip(rows["user_id"], bundle.predict_proba(rows), strict=True))
    np.testing.assert_allclose(scores["churn_probability"], scores["user_id"].map(expected), rtol=1e-5)


# --- a refused or interrupted run never becomes LATEST ---------------------------------------------

@pytest.fixture
def small(config: Config, tmp_path: Path) -> Config:
    """The smallest training: LR only, one process, one epoch, a registry of the test's own."""
    return load_config(ROOT / "conf" / "local.yaml", [
        *TEST_SETTINGS, f"lakehouse={config.lakehouse}", f"mlflow.tracking_uri={tmp_path / 'mlruns'}",
        "train.models=[lr]", "train.launcher=single", "train.num_processes=1", "train.epochs=1",
        "train.batch_size=8", "train.use_gpu=false"])


def _listing(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with a file's bytes (None for a folder)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def test_a_refused_train_creates_nothing_and_leaves_latest(
        spark: SparkSession, small: Config, capsys: pytest.CaptureFixture[str]) -> None:
    """One class in the training snapshots: refused before any run folder exists (today an
    empty run is created and LATEST points at it), through the library and the CLI."""
    write_small_training_set(spark, small, {day: [0] * 6 for day in SMALL_SNAPSHOTS})
    models = local(small.location("models"))
    (models / "20260101T000000").mkdir(parents=True)
    (models / "20260101T000000" / "complete.json").write_text("{}")
    (models / "LATEST").write_text("20260101T000000")
    before = _listing(Path(small.lakehouse))
    # validation users are held out (3 of the 18 rows) at the validation snapshot 2026-03-12 too
    line = ("train: the train snapshots (2026-01-01, 2026-02-05, 2026-03-12) hold one class only (15 users, none "
            "churned); label more snapshot dates")

    with pytest.raises(InputError) as refused:
        run_training(spark, small)
    assert str(refused.value) == line
    code = main(["train", *[a for s in [f"lakehouse={small.lakehouse}", "train.models=[lr]",
                                        "train.launcher=single"] for a in ("--set", s)]])
    assert (code, capsys.readouterr().err.splitlines()) == (2, [f"churn-spark: error: {line}"])
    assert _listing(Path(small.lakehouse)) == before


def test_evaluate_refuses_a_latest_run_that_never_completed(
        spark: SparkSession, small: Config, capsys: pytest.CaptureFixture[str]) -> None:
    """What an older version left behind: LATEST naming an empty run folder (today: a traceback)."""
    models = local(small.location("models"))
    (models / "20260101T000000").mkdir(parents=True)
    (models / "LATEST").write_text("20260101T000000")
    line = (f"{small.location('models')}/20260101T000000: training run 20260101T000000 did not complete; "
            f"run churn-spark train (--resume continues it)")
    with pytest.raises(InputError) as refused:
        evaluate_run(spark, small)
    assert str(refused.value) == line
    assert main(["evaluate", "--set", f"lakehouse={small.lakehouse}"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"churn-spark: error: {line}"]


def test_resume_continues_an_interrupted_run_never_an_empty_one(spark: SparkSession, small: Config) -> None:
    write_small_training_set(spark, small, {day: [0, 1] * 6 for day in SMALL_SNAPSHOTS})
    models = local(small.location("models"))
    (models / "29990101T000000").mkdir(parents=True)  # created, then abandoned before its plan: no run
    (models / "LATEST").write_text("29990101T000000")

    first = run_training(spark, small, resume=True)
    assert first["run"] not in ("29990101T000000", "29990101T000001")
    assert (models / "LATEST").read_text() == first["run"]
    assert json.loads((models / first["run"] / "complete.json").read_text())["version"] == first["version"] == "1"
    assert list((models / "29990101T000000").iterdir()) == []
    assert evaluate_run(spark, small) == first["metrics"]

    # Killed after its plan was written: resumed in place, and LATEST moves there once it completes.
    interrupted = models / "29990101T000001"
    interrupted.mkdir()
    (interrupted / "split.json").write_text((models / first["run"] / "split.json").read_text())
    second = run_training(spark, small, resume=True)
    assert (second["run"], second["version"]) == ("29990101T000001", "2")
    assert (models / "LATEST").read_text() == "29990101T000001"
    assert (interrupted / "complete.json").exists() and (interrupted / "lr.pt").exists()
