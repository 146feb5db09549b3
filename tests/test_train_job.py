"""End to end on generated data: train both networks with 2 DDP processes through Petastorm,
beat the recency-only score, write the report, register the model in MLflow."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark.config import Config, load_config
from churn_spark.features import compute_features
from churn_spark.ingest import ingest
from churn_spark.pipeline import generate_landing
from churn_spark.score import run_scoring
from churn_spark.snapshots import run_labels
from churn_spark.tables import read_table
from churn_spark.train.bundle import Bundle
from churn_spark.train.job import evaluate_run, run_training
from churn_spark.train.tracking import tracking_uri
from tests.conftest import ROOT, TEST_SETTINGS

SNAPSHOTS = [dt.date(2026, 2, 26) + dt.timedelta(days=14 * k) for k in range(7)]


@pytest.fixture(scope="module")
def trained(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, dict]:
    root = tmp_path_factory.mktemp("trainjob")
    config = load_config(ROOT / "conf" / "local.yaml", [
        *TEST_SETTINGS, f"lakehouse={root / 'lakehouse'}", f"mlflow.tracking_uri={root / 'mlruns'}",
        "generate.users=600", "generate.days=180", "train.epochs=10", "train.num_processes=2",
        "train.launcher=torchdistributor"])
    generate_landing(spark, config.generate, str(root / "landing"))
    ingest(spark, config, str(root / "landing" / "events"), str(root / "landing" / "users"), "jsonl")
    run_labels(spark, config, SNAPSHOTS)
    return config, run_training(spark, config)


def test_networks_beat_the_recency_only_score(trained: tuple[Config, dict]) -> None:
    _, result = trained
    models = result["metrics"]["models"]
    assert {s["world_size"] for s in result["summaries"].values()} == {2}
    assert models["mlp"]["roc_auc"] > models["recency"]["roc_auc"] + 0.03
    assert models["lr"]["roc_auc"] > models["recency"]["roc_auc"]
    assert models["lightgbm"]["roc_auc"] > models["recency"]["roc_auc"]


def test_report_and_evaluate_agree(spark: SparkSession, trained: tuple[Config, dict]) -> None:
    config, result = trained
    latest = Path(config.location("reports")) / "latest"
    assert json.loads((latest / "metrics.json").read_text()) == result["metrics"]
    assert evaluate_run(spark, config) == result["metrics"]


def test_registered_model_scores_like_the_bundle(spark: SparkSession, trained: tuple[Config, dict]) -> None:
    config, result = trained
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    model = mlflow.pyfunc.load_model(f"models:/{config.mlflow.model_name}/{result['version']}")
    rows = read_table(spark, config, "training_set").where(F.col("snapshot_date") == SNAPSHOTS[-1]).toPandas()
    version = mlflow.MlflowClient().get_model_version(config.mlflow.model_name, result["version"])
    bundle = Bundle.load(str(Path(config.location("models")) / result["run"] / f"{version.tags['kind']}.pt"))
    assert np.allclose(model.predict(rows)["churn_probability"].to_numpy(), bundle.predict_proba(rows))
    assert float(version.tags["threshold"]) == pytest.approx(bundle.threshold)
    assert version.tags["features"].split(",") == bundle.features


def test_scoring_job_gives_the_registered_models_output(spark: SparkSession, trained: tuple[Config, dict]) -> None:
    """The whole population at the last snapshot, features computed from the events (there is no
    user_features table here), scored by the Spark job: sampled users equal the pyfunc's output."""
    config, result = trained
    as_of = SNAPSHOTS[-1]
    scored = run_scoring(spark, config, as_of)
    assert scored.model_version == result["version"]
    scores = read_table(spark, config, "churn_scores").toPandas().set_index("user_id")
    events, users = read_table(spark, config, "events"), read_table(spark, config, "users")
    features = compute_features(events, users, [as_of], config.features).toPandas()
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
