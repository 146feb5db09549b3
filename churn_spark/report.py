"""The manager's report: one self-contained HTML page for the latest scoring run.

Risk distribution, tier sizes, revenue at risk and the most frequent alert reasons and actions
of one scoring run (aggregated in Spark: no user rows leave the cluster), the runs up to it over
time (tiers, alerts, revenue at risk, drift, realised performance: ``run_history``), the latest
retention policy's estimated net value per policy and per action (``policy_values``), beside the
latest evaluation report's metrics and plots. Written to ``<lakehouse>/reports/manager-<date>.html``, and
to ``manager.html`` when it is the latest complete run; the page lists the dates whose runs are
incomplete.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from pyspark.sql import DataFrame, SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from churn_spark import runs as score_runs  # noqa: E402
from churn_spark import storage, tables  # noqa: E402
from churn_spark.alerts import action_counts, reason_counts  # noqa: E402
from churn_spark.config import Config, FeaturesConfig  # noqa: E402
from churn_spark.errors import InputError  # noqa: E402
from churn_spark.explain import reason_labels  # noqa: E402
from churn_spark.features import catalogue  # noqa: E402
from churn_spark.score import TIERS  # noqa: E402

BINS = 20
log = logging.getLogger(__name__)


def risk_histogram(scores: DataFrame, bins: int = BINS) -> DataFrame:
    """Users per probability bin (``bin`` = lower edge) and tier."""
    edge = F.least(F.floor(F.col("churn_probability") * bins), F.lit(bins - 1)) / bins
    return scores.groupBy(edge.alias("bin"), "risk_tier").agg(F.count(F.lit(1)).alias("users")).orderBy("bin")


def top_reasons_in_words(alerts: DataFrame, settings: FeaturesConfig, top: int = 10) -> pd.DataFrame:
    """The ``top`` most frequent reasons among the alerts, in words (``reason``, ``alerts``,
    and the ``feature`` behind each), most frequent first."""
    counts = reason_counts(alerts).limit(top).toPandas()
    words = reason_labels(list(counts["feature"]), catalogue(settings), settings.history_days)
    return counts.assign(reason=counts["feature"].map(words))[["reason", "alerts", "feature"]]


def write_manager_report(spark: SparkSession, config: Config, as_of: dt.date | None = None) -> str:
    """Write the report for the scoring run of ``as_of`` (default: the latest complete one);
    return its location (a URI): ``manager.html`` for the latest complete run, else the dated
    copy alone.

    Every incomplete run is logged as a warning (one line each) and listed on the page.

    Raises
    ------
    InputError
        If there is no complete scoring run (at ``as_of``).
    """
    if not tables.table_exists(spark, config, "score_runs"):
        raise InputError(f"{config.table('score_runs')}: no scoring run yet; run churn-spark score first")
    incomplete = [i.line() for i in score_runs.incomplete_runs(spark, config)]
    for line in incomplete:
        log.warning("%s", line)
    complete = score_runs.complete_runs(spark, config)
    latest = complete.agg(F.max("snapshot_date")).first()[0]
    as_of = as_of or latest
    run = complete.where(F.col("snapshot_date") == F.lit(as_of)).first() if as_of else None
    if run is None:
        raise InputError(f"{config.table('score_runs')}: no complete scoring run {f'at {as_of}' if as_of else 'yet'}")
    scores = tables.read_table(spark, config, "churn_scores").where(F.col("snapshot_date") == F.lit(as_of))
    alerts = tables.read_table(spark, config, "alerts").where(F.col("snapshot_date") == F.lit(as_of))
    histogram = risk_histogram(scores).toPandas()
    reasons = top_reasons_in_words(alerts, config.features)
    actions = action_counts(alerts).toPandas()
    reports = config.location("reports")
    evaluation = _evaluation(config, storage.join(reports, "latest"))
    history = run_history(spark, config, as_of)
    policy = policy_values(spark, config)
    page = _page(run.asDict(), histogram, reasons, actions, evaluation, incomplete, history, policy)
    path = storage.join(reports, f"manager-{as_of.isoformat()}.html")
    storage.write_text(path, page, config)
    if as_of == latest:  # the undated page always shows the latest run
        path = storage.join(reports, "manager.html")
        storage.write_text(path, page, config)
    return path


def run_history(spark: SparkSession, config: Config, until: dt.date) -> pd.DataFrame:
    """One row per complete scoring run up to ``until``, oldest first: its tiers, new alerts and
    revenue at risk (``score_runs``), its score's PSI and the largest feature PSI
    (``drift_metrics``), and, once its label window has closed, its realised ROC-AUC, its model's
    test ROC-AUC and its alerts' precision (``model_performance``); missing values are NaN."""
    runs = (score_runs.complete_runs(spark, config).where(F.col("snapshot_date") <= F.lit(until))
            .select("snapshot_date", "model_version", "users_scored", *TIERS, "new_alerts", "revenue_at_risk"))
    if tables.table_exists(spark, config, "drift_metrics"):
        drift = tables.read_table(spark, config, "drift_metrics").groupBy("snapshot_date").agg(
            F.max(F.when(F.col("feature") == "churn_probability", F.col("psi"))).alias("score_psi"),
            F.max(F.when(F.col("feature") != "churn_probability", F.col("psi"))).alias("max_feature_psi"))
        runs = runs.join(drift, "snapshot_date", "left")
    if tables.table_exists(spark, config, "model_performance"):
        realised = tables.read_table(spark, config, "model_performance").select(
            "snapshot_date", F.col("roc_auc").alias("realised_roc_auc"), "test_roc_auc", "alert_precision")
        runs = runs.join(realised, "snapshot_date", "left")
    frame = runs.orderBy("snapshot_date").toPandas()
    for column in ("score_psi", "max_feature_psi", "realised_roc_auc", "test_roc_auc", "alert_precision"):
        frame[column] = frame[column].astype(float) if column in frame else float("nan")
    return frame


def policy_values(spark: SparkSession, config: Config) -> pd.DataFrame | None:
    """The latest ``churn-spark policy`` evaluation (``policy_evaluation`` at its last date): every
    policy's net value per alerted user by each estimator (action ``all``) and the parts each
    action adds to each policy's DR estimate; None before any."""
    if not tables.table_exists(spark, config, "policy_evaluation"):
        return None
    judged = tables.read_table(spark, config, "policy_evaluation")
    through = judged.agg(F.max("through_date")).first()[0]
    if through is None:
        return None
    return judged.where(F.col("through_date") == F.lit(through)).orderBy("policy", "estimator", "action").toPandas()


def _policy_section(values: pd.DataFrame) -> str:
    """The policies' estimated net values (and true values, where the world is known) as a table,
    and the learnt policy's DR net value per action as a plot."""
    whole = values[values["action"] == "all"]
    estimators = [e for e in ("ips", "snips", "dr", "observed", "truth") if e in set(whole["estimator"])]

    def cell(policy: str, estimator: str) -> str:
        row = whole[(whole["policy"] == policy) & (whole["estimator"] == estimator)]
        if row.empty:
            return "-"
        r = row.iloc[0]
        interval = "" if pd.isna(r["low"]) else f" [{r['low']:.2f}, {r['high']:.2f}]"
        return f"{r['value']:.2f}{interval}"

    policies = [p for p in ("learnt", "rules", "all_high_risk", "none", "logged") if p in set(whole["policy"])]
    header = "".join(f"<th>{e}</th>" for e in estimators)
    rows = "".join(f"<tr><td>{p}</td>" + "".join(f"<td>{cell(p, e)}</td>" for e in estimators) + "</tr>"
                   for p in policies)
    first = values.iloc[0]
    return (f"<h2>Retention policy {html.escape(str(first['policy_version']))} (assignments through "
            f"{first['through_date']}, {first['rows']:,} of them)</h2><p>Net value per alerted user (kept users' "
            f"margin minus the actions' cost), 95% bootstrap intervals; truth: the generated world's own.</p>"
            f"<table><tr><th>policy</th>{header}</tr>{rows}</table>" + _img(_policy_png(values)))


def _policy_png(values: pd.DataFrame) -> bytes:
    """The learnt policy's DR net value per alerted user, split by the action it gives, with the
    users it gives each."""
    parts = values[(values["policy"] == "learnt") & (values["estimator"] == "dr") & (values["action"] != "all")]
    figure, axes = plt.subplots(figsize=(7, 3.2))
    low, high = parts["value"] - parts["low"], parts["high"] - parts["value"]
    axes.bar(parts["action"], parts["value"], yerr=[low.fillna(0), high.fillna(0)], capsize=4, color="tab:green")
    for x, (value, users) in enumerate(zip(parts["value"], parts["users"])):
        axes.annotate(f"{users:,} users", (x, value), ha="center", va="bottom", fontsize=8)
    axes.axhline(0, color="grey", linewidth=1)
    axes.set(title="Learnt policy: net value per alerted user, by action (DR)", ylabel="net value")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def _evaluation(config: Config, folder: str) -> tuple[dict, list[bytes]] | None:
    """The latest evaluation report's metrics and plots, or None where there is none."""
    metrics = storage.join(folder, "metrics.json")
    if not storage.exists(metrics, config):
        return None
    plots = [storage.join(folder, f"{n}.png") for n in ("roc", "pr", "calibration", "lift")]
    return (json.loads(storage.read_text(metrics, config)),
            [storage.read_bytes(p, config) for p in plots if storage.exists(p, config)])


def _page(run: dict, histogram, reasons, actions, evaluation: tuple[dict, list[bytes]] | None,
          incomplete: list[str], history: pd.DataFrame, policy: pd.DataFrame | None = None) -> str:
    tiers = "".join(f"<tr><td>{t}</td><td>{run[t]:,}</td></tr>" for t in TIERS)
    cards = (f"<p>Snapshot <b>{run['snapshot_date']}</b>, model version {html.escape(str(run['model_version']))}: "
             f"<b>{run['users_scored']:,}</b> users scored, <b>{run['new_alerts']:,}</b> new alerts, revenue at "
             f"risk (last-90-day spend of the high tier) <b>{run['revenue_at_risk']:,.2f}</b>.</p>")
    warned = "".join(f"<li>{html.escape(line)}</li>" for line in incomplete)
    cards += f"<h2>Incomplete runs</h2><ul>{warned}</ul>" if incomplete else ""
    body = [f"<h1>Churn early warning</h1>{cards}<h2>Tiers</h2><table><tr><th>tier</th><th>users</th></tr>{tiers}</table>",
            "<h2>Risk distribution</h2>" + _img(_histogram_png(histogram)),
            "<h2>Top alert reasons</h2>" + _table(reasons, ["reason", "alerts"]),
            "<h2>Suggested actions</h2>" + _table(actions, ["suggested_action", "alerts"]),
            "<h2>Across runs</h2>" + _history_table(history) + _img(_history_png(history))]
    if policy is not None and not policy.empty:
        body.append(_policy_section(policy))
    if evaluation is not None:
        values, plots = evaluation
        rows = "".join(f"<tr><td>{html.escape(m)}</td><td>{v['roc_auc']:.3f}</td><td>{v['pr_auc']:.3f}</td>"
                       f"<td>{v['top_decile_lift']:.2f}</td></tr>" for m, v in values["models"].items())
        body.append(f"<h2>Model quality (test snapshot {values['test_snapshot']})</h2><table><tr><th>model</th>"
                    f"<th>ROC-AUC</th><th>PR-AUC</th><th>top-decile lift</th></tr>{rows}</table>")
        body.append("".join(_img(png) for png in plots))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>churn-spark: churn early warning</title>"
            "<style>body{font-family:sans-serif;max-width:1100px}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
            "text-align:left}</style></head><body>" + "".join(body) + "</body></html>")


def _history_table(history: pd.DataFrame) -> str:
    """The runs as a table: dates, tiers, alerts, revenue at risk, drift, realised quality."""
    def number(value: float, digits: int) -> str:
        return "-" if pd.isna(value) else f"{value:.{digits}f}"

    header = ("<tr><th>snapshot</th><th>version</th><th>users</th><th>high</th><th>medium</th><th>new alerts</th>"
              "<th>revenue at risk</th><th>score PSI</th><th>largest feature PSI</th><th>realised ROC-AUC</th>"
              "<th>test ROC-AUC</th><th>alert precision</th></tr>")
    rows = "".join(
        f"<tr><td>{r.snapshot_date}</td><td>{html.escape(str(r.model_version))}</td><td>{r.users_scored:,}</td>"
        f"<td>{r.high:,}</td><td>{r.medium:,}</td><td>{r.new_alerts:,}</td><td>{r.revenue_at_risk:,.2f}</td>"
        f"<td>{number(r.score_psi, 3)}</td><td>{number(r.max_feature_psi, 3)}</td>"
        f"<td>{number(r.realised_roc_auc, 3)}</td><td>{number(r.test_roc_auc, 3)}</td>"
        f"<td>{number(r.alert_precision, 3)}</td></tr>" for r in history.itertuples())
    return f"<table>{header}{rows}</table>"


def _history_png(history: pd.DataFrame) -> bytes:
    """Four panels over the runs' dates: tier sizes, alerts and revenue at risk, the score's PSI
    (the 0.25 alarm drawn), realised ROC-AUC against the model's test figure."""
    figure, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True)
    dates = pd.to_datetime(history["snapshot_date"])
    for tier in TIERS:
        axes[0, 0].plot(dates, history[tier], marker="o", label=tier)
    axes[0, 0].set(title="Users per tier", ylabel="users")
    axes[0, 0].legend(fontsize=8)
    axes[0, 1].bar(dates, history["new_alerts"], width=3, color="tab:orange", label="new alerts")
    axes[0, 1].set(title="New alerts and revenue at risk", ylabel="alerts")
    money = axes[0, 1].twinx()
    money.plot(dates, history["revenue_at_risk"], color="tab:red", marker="o", label="revenue at risk")
    money.set_ylabel("revenue at risk")
    axes[1, 0].plot(dates, history["score_psi"], marker="o", label="score")
    axes[1, 0].plot(dates, history["max_feature_psi"], marker="x", linestyle=":", label="largest feature")
    axes[1, 0].axhline(0.25, color="grey", linestyle="--", linewidth=1)
    axes[1, 0].set(title="Drift from the model's reference (PSI)", ylabel="PSI")
    axes[1, 0].legend(fontsize=8)
    axes[1, 1].plot(dates, history["realised_roc_auc"], marker="o", label="realised (matured runs)")
    axes[1, 1].plot(dates, history["test_roc_auc"], linestyle="--", label="model's test")
    axes[1, 1].set(title="ROC-AUC once the label window closed", ylabel="ROC-AUC")
    axes[1, 1].legend(fontsize=8)
    for axis in axes[1]:
        axis.tick_params(axis="x", labelrotation=30)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def _table(frame, columns: list[str]) -> str:
    header = "".join(f"<th>{c.replace('_', ' ')}</th>" for c in columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(row[c]))}</td>" for c in columns) + "</tr>"
                   for _, row in frame.iterrows())
    return f"<table><tr>{header}</tr>{rows}</table>" if len(frame) else "<p>No alerts in this run.</p>"


def _histogram_png(histogram) -> bytes:
    figure, axes = plt.subplots(figsize=(7, 3.5))
    bottom = None
    for tier in TIERS:
        counts = histogram[histogram["risk_tier"] == tier].groupby("bin")["users"].sum()
        counts = counts.reindex([b / BINS for b in range(BINS)], fill_value=0)
        axes.bar(counts.index, counts.to_numpy(), width=1 / BINS, align="edge", label=tier,
                 bottom=bottom)
        bottom = counts.to_numpy() if bottom is None else bottom + counts.to_numpy()
    axes.set(xlabel="churn probability", ylabel="users", title="Users by churn probability and tier")
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _img(png: bytes) -> str:
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
