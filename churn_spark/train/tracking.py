"""MLflow: parameters, per-epoch metrics, the report, and the registered model.

The registered model is an MLflow pyfunc wrapping a ``Bundle`` (weights, preprocessing
state, feature list, threshold), so scoring loads the version holding the ``champion`` alias
(set by ``churn-spark promote``; the latest version while none does) or a named version and
calls ``predict`` on raw feature rows.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from churn_spark import storage
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.train.bundle import Bundle
from churn_spark.train.sequence import SEQUENCE
from churn_spark.train.split import Split

CHAMPION = "champion"  # the registered-model alias that scoring uses by default


class ChurnModel(mlflow.pyfunc.PythonModel):
    """A churn model of any kind as an MLflow pyfunc: raw feature rows in, calibrated churn
    probabilities out."""

    def load_context(self, context: Any) -> None:
        self.bundle = Bundle.load(context.artifacts["bundle"])
        self.model = self.bundle.model()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        return pd.DataFrame({"churn_probability": self.bundle.predict_proba(model_input, self.model)})


def tracking_uri(setting: str) -> str:
    """A local folder becomes an absolute path; any other MLflow URI (``file:`` included) is kept.

    A folder store (a path or ``file:``) is allowed explicitly: recent MLflow 3 releases refuse
    one otherwise ("maintenance mode"), and the database store they suggest needs the full
    mlflow package, which a runtime's mlflow-skinny is not.
    """
    if setting.startswith("file:") or not storage.is_uri(setting):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    if storage.is_uri(setting):
        return setting
    return storage.local_path(storage.canonical(setting))


def track_run(config: Config, split: Split, summaries: dict[str, dict], metrics: dict, run_dir: str) -> str:
    """Log the run and register its champion (best validation ROC-AUC, any kind); return the
    registered version."""
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    mlflow.set_experiment(config.mlflow.experiment)
    settings = config.train
    name = posixpath.basename(run_dir)
    with mlflow.start_run(run_name=name):
        mlflow.log_params({
            "models": ",".join(settings.models), "launcher": settings.launcher,
            "num_processes": settings.num_processes, "epochs": settings.epochs, "batch_size": settings.batch_size,
            "learning_rate": settings.learning_rate, "seed": settings.seed, "threshold_rule": settings.threshold_rule,
            "horizon_days": config.labels.horizon_days, "train_snapshots": ",".join(map(str, split.train)),
            "valid_snapshots": ",".join(map(str, split.valid)), "test_snapshots": ",".join(map(str, split.test)),
            "valid_users": split.valid_users,
        })
        for kind, summary in summaries.items():
            # What each network trained with: train's settings, or the best of churn-spark tune.
            mlflow.log_params({f"{kind}_{name}": value for name, value in summary.get("hyperparameters", {}).items()})
            for row in summary.get("history", []):  # a network's epochs (a booster has none)
                mlflow.log_metrics({f"{kind}_loss": row["loss"], f"{kind}_valid_auc": row["valid_auc"]},
                                   step=int(row["epoch"]))
        for model, values in metrics["models"].items():
            mlflow.log_metrics({f"test_{model}_{name}": value for name, value in values.items()})
        mlflow.log_metrics({f"valid_{model}_roc_auc": value for model, value in metrics["valid_roc_auc"].items()})
        mlflow.log_params({f"calibration_{model}": method for model, method in metrics["calibration"].items()})
        # MLflow logs local files only: a report on an object store or HDFS is copied down first.
        with storage.local_copy(storage.join(config.location("reports"), name), config) as report:
            mlflow.log_artifacts(report, "report")
        best = metrics["champion"]
        return register_bundle(config, storage.join(run_dir, f"{best}.pt"),
                               {"test_roc_auc": metrics["models"][best]["roc_auc"],
                                "valid_roc_auc": metrics["valid_roc_auc"][best], "run": name})


def register_bundle(config: Config, path: str | os.PathLike[str], tags: dict[str, Any] | None = None) -> str:
    """Log a bundle file (a path or URI) as the pyfunc model of the active run (or of a new one),
    register it under ``mlflow.model_name`` with its kind, threshold and features as tags; return
    its version."""
    path = os.fspath(path)
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    bundle = Bundle.load(path, config)
    if not mlflow.active_run():
        mlflow.set_experiment(config.mlflow.experiment)
    run_name = posixpath.splitext(posixpath.basename(path))[0]
    with (contextlib.nullcontext() if mlflow.active_run() else mlflow.start_run(run_name=run_name),
          storage.local_copy(path, config) as local):
        info = mlflow.pyfunc.log_model(
            "model", python_model=ChurnModel(), artifacts={"bundle": local},
            registered_model_name=config.mlflow.model_name, signature=_signature(bundle),
            pip_requirements=_requirements())  # given, not inferred: inference re-imports the model (~8 s)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    for key, value in {"kind": bundle.kind, "threshold": bundle.threshold, "features": ",".join(bundle.features),
                       "calibration": bundle.calibration.method,
                       **(tags or {})}.items():
        client.set_model_version_tag(config.mlflow.model_name, version, key, str(value))
    return version


def _signature(bundle: Bundle) -> ModelSignature:
    """Raw feature rows in (numerics and category text, a sequence model's daily sequence as an
    array of floats), ``churn_probability`` out; Unity Catalog's registry requires a signature."""
    from mlflow.types.schema import Array

    categorical = bundle.preprocessing.categorical

    def spec(name: str) -> ColSpec:
        if name == SEQUENCE:
            return ColSpec(Array("float"), name)
        return ColSpec("string" if name in categorical else "double", name)

    inputs = [spec(name) for name in bundle.inputs]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", "churn_probability")]))


def _requirements() -> list[str]:
    """What loading the pyfunc needs: this package (it defines the model class) and its stack.
    MLflow by its skinny distribution: the only one the Databricks runtimes have, and the one
    the full package depends on."""
    from importlib.metadata import version

    names = ("churn-spark", "torch", "lightgbm", "pandas", "numpy", "mlflow-skinny")
    return [f"{name}=={version(name)}" for name in names]


def champion_version(config: Config) -> str | None:
    """The version holding the ``champion`` alias of ``mlflow.model_name`` (registered), or None."""
    mlflow.set_tracking_uri(tracking_uri(config.mlflow.tracking_uri))
    version = mlflow.MlflowClient().get_registered_model(config.mlflow.model_name).aliases.get(CHAMPION)
    return str(version) if version is not None else None


def _local_store_exists(uri: str) -> bool:
    """False for a local store that does not exist yet: a folder (or ``file:``) without the model
    registry's ``models`` folder, or a missing ``sqlite:`` file; True for any other URI."""
    if uri.startswith("sqlite:///"):
        return storage.exists(uri[len("sqlite:///"):])
    if storage.is_uri(uri) and not uri.startswith("file:"):
        return True  # a tracking server or database: asking it creates nothing here
    return storage.isdir(storage.join(uri, "models"))


def load_registered(config: Config, version: str | None = None) -> tuple[str, Bundle]:
    """A registered version of ``mlflow.model_name`` and its bundle.

    Parameters
    ----------
    config
        Names the tracking URI and the model.
    version
        A version number; ``"latest"`` for the highest one; None for the version holding the
        ``champion`` alias, or the latest where no version holds it.

    Returns
    -------
    tuple of (str, Bundle)
        The version chosen and its bundle (``bundle.version`` set to it).

    Raises
    ------
    InputError
        If the model or the version is not registered at the tracking URI.
    """
    uri = tracking_uri(config.mlflow.tracking_uri)
    name = config.mlflow.model_name
    nothing = InputError(f"no registered model {name} at {uri}; run churn-spark train first")
    if not _local_store_exists(uri):
        raise nothing  # before MLflow's client, which would create an empty store there
    mlflow.set_tracking_uri(uri)
    known = sorted(int(v.version) for v in mlflow.MlflowClient().search_model_versions(f"name='{name}'"))
    if not known:
        raise nothing
    if version is None:
        version = champion_version(config) or "latest"
    chosen = str(known[-1]) if version == "latest" else str(version)
    if not chosen.isdigit() or int(chosen) not in known:
        raise InputError(f"model {name}: no version {version} at {uri}; registered: "
                         f"{', '.join(map(str, known))}")
    model = mlflow.pyfunc.load_model(f"models:/{name}/{chosen}")
    bundle = model.unwrap_python_model().bundle
    bundle.version = chosen
    return chosen, bundle
