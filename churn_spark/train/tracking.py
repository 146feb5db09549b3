"""MLflow: parameters, per-epoch metrics, the report, and the registered model.

The registered model is an MLflow pyfunc wrapping a ``Bundle`` (weights, preprocessing
state, feature list, threshold), so scoring loads ``models:/NAME/latest`` or a named version
and calls ``predict`` on raw feature rows.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from churn_spark.config import Config
from churn_spark.train.bundle import Bundle
from churn_spark.train.split import Split


class ChurnModel(mlflow.pyfunc.PythonModel):
    """A churn network as an MLflow pyfunc: raw feature rows in, churn probabilities out."""

    def load_context(self, context: Any) -> None:
        self.bundle = Bundle.load(context.artifacts["bundle"])
        self.network = self.bundle.network()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return pd.DataFrame({"churn_probability": self.bundle.predict_proba(model_input, self.network)})


def tracking_uri(setting: str) -> str:
    """A local folder becomes an absolute path; any other MLflow URI is kept."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", setting):
        return setting
    return os.path.abspath(setting)


def track_run(config: Config, split: Split, summaries: dict[str, dict], metrics: dict, run_dir: Path) -> str:
    """Log the run and register its best network; return the registered version."""
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    mlflow.set_experiment(config.mlflow.experiment)
    settings = config.train
    with mlflow.start_run(run_name=run_dir.name):
        mlflow.log_params({
            "models": ",".join(settings.models), "launcher": settings.launcher,
            "num_processes": settings.num_processes, "epochs": settings.epochs, "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate, "seed": settings.seed, "threshold_rule": settings.threshold_rule,
            "horizon_days": config.labels.horizon_days, "train_snapshots": ",".join(map(str, split.train)),
            "valid_snapshots": ",".join(map(str, split.valid)), "test_snapshots": ",".join(map(str, split.test)),
        })
        for kind, summary in summaries.items():
            for row in summary["history"]:
                mlflow.log_metrics({f"{kind}_loss": row["loss"], f"{kind}_valid_auc": row["valid_auc"]},
                                   step=int(row["epoch"]))
        for model, values in metrics["models"].items():
            mlflow.log_metrics({f"test_{model}_{name}": value for name, value in values.items()})
        mlflow.log_artifacts(str(Path(config.location("reports")) / run_dir.name), "report")
        best = max(summaries, key=lambda kind: metrics["models"][kind]["roc_auc"])
        bundle = Bundle.load(str(run_dir / f"{best}.pt"))
        info = mlflow.pyfunc.log_model(
            "model", python_model=ChurnModel(), artifacts={"bundle": str(run_dir / f"{best}.pt")},
            registered_model_name=config.mlflow.model_name)
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        for key, value in {"kind": best, "threshold": bundle.threshold, "features": ",".join(bundle.features),
                           "test_roc_auc": metrics["models"][best]["roc_auc"], "run": run_dir.name}.items():
            client.set_model_version_tag(config.mlflow.model_name, version, key, str(value))
    return version
