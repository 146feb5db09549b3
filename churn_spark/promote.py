"""Promotion: a newly registered model becomes the ``champion`` only when it ranks better.

Both the candidate (the latest registered version, or a named one) and the current champion
(the version holding the registered-model alias ``champion``) score the latest matured
snapshot: the largest ``snapshot_date`` in ``training_set``, which holds only snapshots whose
label window is complete. The candidate takes the alias when there is no champion yet or its
ROC-AUC is strictly higher; the decision is recorded as tags on the candidate's version.
Scoring loads the champion by default (:func:`churn_spark.train.tracking.load_registered`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import mlflow
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from sklearn.metrics import roc_auc_score

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.score import check_compatible, with_model_inputs
from churn_spark.train.bundle import Bundle
from churn_spark.train.sequence import SEQUENCE
from churn_spark.train.tracking import CHAMPION, champion_version, load_registered

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionResult:
    """What a promotion compared and decided."""

    snapshot_date: dt.date
    users: int
    candidate: str
    candidate_auc: float
    champion: str | None  # the champion before this decision; None when there was none
    champion_auc: float | None
    promoted: bool

    def lines(self) -> list[str]:
        """The comparison and the decision, as printed by ``churn-spark promote``."""
        lines = [f"evaluated on training_set snapshot {self.snapshot_date} ({self.users:,} users)",
                 f"candidate version {self.candidate}: ROC-AUC {self.candidate_auc:.4f}"]
        if self.champion is None:
            return [*lines, f"no champion yet: version {self.candidate} promoted to {CHAMPION}"]
        lines.append(f"champion  version {self.champion}: ROC-AUC {self.champion_auc:.4f}")
        if self.promoted:
            return [*lines, f"version {self.candidate} promoted to {CHAMPION} (was version {self.champion})"]
        if self.champion == self.candidate:
            return [*lines, f"version {self.candidate} already holds {CHAMPION}; nothing changed"]
        return [*lines, f"kept {CHAMPION} version {self.champion}: the candidate's ROC-AUC is not higher"]


def promote(spark: SparkSession, config: Config, candidate: str | None = None) -> PromotionResult:
    """Compare the candidate with the champion on the latest matured snapshot; promote if better.

    Parameters
    ----------
    spark
        The session that reads ``training_set``.
    config
        Names the tracking URI, the registered model and the tables.
    candidate
        A registered version of ``mlflow.model_name``; None for the latest one.

    Returns
    -------
    PromotionResult
        Both ROC-AUCs, the snapshot they were measured on, and whether the alias moved.

    Raises
    ------
    InputError
        If a version is not registered, ``training_set`` is missing or empty, its latest snapshot
        lacks a feature a model needs or holds a single class, before any tag or alias is set.
    """
    version, bundle = load_registered(config, "latest" if candidate is None else candidate)
    bundles = {version: bundle}
    champion = champion_version(config)
    if champion is not None and champion != version:
        bundles[champion] = load_registered(config, champion)[1]
    day, rows = _latest_matured(spark, config, bundles.values())
    aucs = {v: float(roc_auc_score(rows["label"], b.predict_proba(rows))) for v, b in bundles.items()}
    result = PromotionResult(day, len(rows), version, aucs[version], champion,
                             None if champion is None else aucs[champion],
                             champion is None or aucs[version] > aucs[champion])
    _record(config, result)
    return result


def _latest_matured(spark: SparkSession, config: Config, bundles: Iterable[Bundle]) -> tuple[dt.date, pd.DataFrame]:
    """The latest ``training_set`` snapshot date and its label and model-feature columns (pandas)."""
    if not tables.table_exists(spark, config, "training_set"):
        raise InputError(f"{config.table('training_set')}: no training_set table; run churn-spark labels first")
    frame = tables.read_table(spark, config, "training_set")
    day = frame.agg(F.max("snapshot_date")).first()[0]
    if day is None:
        raise InputError(f"{config.table('training_set')}: training_set is empty; run churn-spark labels first")
    frame = frame.where(F.col("snapshot_date") == F.lit(day))
    for bundle in bundles:  # a sequence model's daily activity before that date, from the rollup
        frame = with_model_inputs(spark, config, frame, bundle) if SEQUENCE not in frame.columns else frame
    features: list[str] = []
    for bundle in bundles:
        check_compatible(bundle, frame.schema, f"training_set at {day}")
        features += [name for name in bundle.inputs if name not in features]
    rows = frame.select("label", *features).toPandas()
    if rows["label"].nunique() < 2:
        raise InputError(f"training_set at {day}: every label is {rows['label'].iloc[0]}; "
                         "ROC-AUC needs churners and non-churners")
    return day, rows


def _record(config: Config, result: PromotionResult) -> None:
    """Tag the candidate's version with the decision; move the alias when it was promoted."""
    client, name = mlflow.MlflowClient(), config.mlflow.model_name
    tags = {
        "promotion_snapshot": result.snapshot_date.isoformat(),
        "promotion_auc": f"{result.candidate_auc:.6f}",
        "promotion_champion": result.champion or "none",
        "promotion_champion_auc": "none" if result.champion_auc is None else f"{result.champion_auc:.6f}",
        "promoted": str(result.promoted).lower(),
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, result.candidate, key, value)
    if result.promoted:
        client.set_registered_model_alias(name, CHAMPION, result.candidate)
    log.info("%s version %s: ROC-AUC %.4f vs champion %s; promoted=%s", name, result.candidate,
             result.candidate_auc, result.champion or "none", result.promoted)
