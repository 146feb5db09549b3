"""Matured-label performance and the retrain trigger (``churn-spark monitor``).

A scoring run at T predicted who makes no purchase in [T, T + ``labels.horizon_days``). Once the
events reach the end of that window, the prediction has matured: ``run_monitor`` finds every
complete scoring run (``score_runs``) that has matured since the last check, labels its users
exactly as ``labels`` would (``labels.label_aggregates`` over the ``user_daily`` rollup), and
writes, per run, Delta ``model_performance``: the realised ROC-AUC, PR-AUC, top-decile lift and
calibration error (ECE) of the scored population (the users in the model's population: the
``lapsed`` tier is left out, as it is from training), the precision of the run's alerts (the
share of alerted users who did churn), and the model's own test ROC-AUC to compare with.

Then the retrain trigger (``monitor.*``), about the version that scores now (the champion, else
the latest):

- drift: its score's PSI (``drift_metrics``) above ``monitor.score_psi`` on each of its last
  ``monitor.psi_runs`` scoring runs;
- performance: its newest matured run's realised ROC-AUC below its own test ROC-AUC minus
  ``monitor.auc_margin``.

``monitor`` prints the decision and exits with ``RETRAIN`` (3) when a rule fires, 0 when none
does: ``churn-spark monitor; [ $? -eq 3 ] && churn-spark train`` (deploy/crontab), or the bundle's
``condition_task`` on the task value that ``exit_status`` sets on Databricks instead.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import mlflow
import numpy as np
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import runs, tables
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.evaluate import model_metrics
from churn_spark.features import KEYS
from churn_spark.labels import label_aggregates, snapshot_days
from churn_spark.snapshots import read_daily

log = logging.getLogger(__name__)

RETRAIN = 3  # monitor's exit status when a retrain rule fires (0: none does; 2: refused)


@dataclass(frozen=True)
class Decision:
    """What ``run_monitor`` measured and decided."""

    version: str  # the version that scores now
    measured: list[dict] = field(default_factory=list)  # the model_performance rows written by this run
    reasons: list[str] = field(default_factory=list)  # the rules that fired (none: keep the model)

    @property
    def retrain(self) -> bool:
        return bool(self.reasons)

    def lines(self) -> list[str]:
        out = [f"model_performance {row['snapshot_date']} (version {row['model_version']}): ROC-AUC "
               f"{row['roc_auc']:.4f} (test {_or_dash(row['test_roc_auc'])}), PR-AUC {row['pr_auc']:.4f}, top-decile "
               f"lift {row['top_decile_lift']:.2f}, ECE {row['ece']:.4f}, churn rate {row['churn_rate']:.4f}, "
               f"{row['alerts']} alerts, precision {_or_dash(row['alert_precision'])}" for row in self.measured]
        if not self.measured:
            out.append("model_performance: no scoring run has matured since the last check")
        verdict = "; ".join(self.reasons) if self.retrain else "no rule fired"
        return [*out, f"retrain: {'yes' if self.retrain else 'no'} for version {self.version} ({verdict})"]


def run_monitor(spark: SparkSession, config: Config) -> Decision:
    """Measure the newly matured scoring runs, write them to ``model_performance``, and decide.

    Raises
    ------
    InputError
        Before anything is written: no scoring run, or no registered model.
    """
    from churn_spark.train.tracking import load_registered

    if not tables.table_exists(spark, config, "score_runs"):
        raise InputError(f"{config.table('score_runs')}: no scoring run yet; run churn-spark score first")
    version, _ = load_registered(config)
    horizon = config.labels.horizon_days
    daily = read_daily(spark, config)
    last_day = daily.agg(F.max("day")).first()[0]
    scored = {r["snapshot_date"]: r["model_version"] for r in runs.complete_runs(spark, config).collect()}
    done = ({r["snapshot_date"] for r in tables.read_table(spark, config, "model_performance")
             .select("snapshot_date").collect()} if tables.table_exists(spark, config, "model_performance") else set())
    # A window [T, T + horizon) has matured once the rollup holds its last day, T + horizon - 1.
    matured = sorted(t for t in scored if t not in done and last_day is not None
                     and t + dt.timedelta(days=horizon - 1) <= last_day)
    measured = _measure(spark, config, daily, {t: scored[t] for t in matured}) if matured else []
    if measured:
        frame = spark.createDataFrame([tuple(row[n] for n in _COLUMNS) for row in measured],
                                      tables.SPECS["model_performance"].schema)
        tables.replace_dates(frame, config, "model_performance", matured)
    decision = Decision(version, measured, _reasons(spark, config, version))
    for line in decision.lines():
        log.info(line)
    return decision


_COLUMNS = tuple(tables.SPECS["model_performance"].schema.fieldNames())


def _measure(spark: SparkSession, config: Config, daily: DataFrame, versions: dict[dt.date, str]) -> list[dict]:
    """One ``model_performance`` row per matured date in ``versions`` (date -> model version)."""
    settings = config.labels
    dates = sorted(versions)
    labels = (snapshot_days(daily, dates, settings.lookback_days, settings.horizon_days)
              .groupBy(*KEYS).agg(*label_aggregates(settings.horizon_days, settings.lookback_days,
                                                    settings.eligibility, daily=True))
              .where("eligible = 1").select(*KEYS, "label"))
    scores = (tables.read_table(spark, config, "churn_scores").where(F.col("snapshot_date").isin(dates))
              .where("risk_tier != 'lapsed'").select(*KEYS, "churn_probability"))
    alerted = (tables.read_table(spark, config, "alerts").where(F.col("snapshot_date").isin(dates))
               .select(*KEYS, F.lit(1).alias("alerted")) if tables.table_exists(spark, config, "alerts")
               else spark.createDataFrame([], "user_id string, snapshot_date date, alerted int"))
    joined = (scores.join(labels, list(KEYS)).join(alerted, list(KEYS), "left")
              .select("snapshot_date", "churn_probability", "label", F.coalesce("alerted", F.lit(0)).alias("alerted"))
              .toPandas())
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    out = []
    for day in dates:
        rows = joined[joined["snapshot_date"] == day]
        y, p = rows["label"].to_numpy(int), rows["churn_probability"].to_numpy(float)
        if len(np.unique(y)) < 2:
            log.warning("model_performance %s: the scored users' labels hold one class; not measured", day)
            continue
        found = model_metrics(y, p, threshold=0.5)  # the report's own figures (the threshold unused here)
        hits = y[rows["alerted"].to_numpy(int) == 1]
        out.append({"snapshot_date": day, "model_version": versions[day], "horizon_days": settings.horizon_days,
                    "users": len(y), "churn_rate": float(y.mean()),
                    **{name: found[name] for name in ("roc_auc", "pr_auc", "top_decile_lift", "ece")},
                    "alerts": len(hits), "alert_precision": float(hits.mean()) if len(hits) else None,
                    "test_roc_auc": _test_roc_auc(config, versions[day]), "computed_at": now})
    return out


def exit_status(spark: SparkSession, decision: Decision) -> int:
    """``RETRAIN`` when a rule fired, else 0. On Databricks, where a job task that exits non-zero
    fails, the decision is set as the task value ``retrain`` ("true" / "false", which the
    bundle's ``condition_task`` reads) and the status is 0."""
    try:
        from pyspark.dbutils import DBUtils  # only on Databricks
    except ImportError:
        return RETRAIN if decision.retrain else 0
    DBUtils(spark).jobs.taskValues.set(key="retrain", value=str(decision.retrain).lower())
    return 0


def _reasons(spark: SparkSession, config: Config, version: str) -> list[str]:
    """The retrain rules that fire for ``version`` (see the module docstring)."""
    settings, reasons = config.monitor, []
    if tables.table_exists(spark, config, "drift_metrics"):
        recent = [r["psi"] for r in tables.read_table(spark, config, "drift_metrics")
                  .where((F.col("feature") == "churn_probability") & (F.col("model_version") == version))
                  .orderBy(F.col("snapshot_date").desc()).limit(settings.psi_runs).collect()]
        if len(recent) == settings.psi_runs and min(recent) > settings.score_psi:
            shown = ", ".join(f"{psi:.3f}" for psi in reversed(recent))
            reasons.append(f"score PSI {shown} above {settings.score_psi} on the last {settings.psi_runs} runs")
    if tables.table_exists(spark, config, "model_performance"):
        newest = (tables.read_table(spark, config, "model_performance").where(F.col("model_version") == version)
                  .orderBy(F.col("snapshot_date").desc()).limit(1).collect())
        if newest and newest[0]["test_roc_auc"] is not None:
            row = newest[0]
            if row["roc_auc"] < row["test_roc_auc"] - settings.auc_margin:
                reasons.append(f"realised ROC-AUC {row['roc_auc']:.4f} at {row['snapshot_date']} below its test "
                               f"{row['test_roc_auc']:.4f} - {settings.auc_margin}")
    return reasons


def _test_roc_auc(config: Config, version: str) -> float | None:
    """The version's own test ROC-AUC, as ``train`` tagged it in the registry (None untagged)."""
    tags = mlflow.MlflowClient().get_model_version(config.mlflow.model_name, version).tags
    return float(tags["test_roc_auc"]) if "test_roc_auc" in tags else None


def _or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
