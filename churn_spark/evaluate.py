"""Evaluation on the test snapshot: metrics, plots, one self-contained HTML report, metrics.json.

Metrics come from scikit-learn (ROC-AUC, PR-AUC, precision/recall/F1, Brier) and torchmetrics
(expected calibration error); lift and capture rate are ratios of counts over the top decile.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    average_precision_score, brier_score_loss, precision_recall_curve, precision_recall_fscore_support,
    roc_auc_score, roc_curve,
)
from torchmetrics.functional.classification import binary_calibration_error  # noqa: E402

from churn_spark import storage  # noqa: E402

if TYPE_CHECKING:
    from churn_spark.config import Config

Scores = tuple[np.ndarray, np.ndarray]  # (labels, probabilities)


def choose_threshold(labels: np.ndarray, scores: np.ndarray, rule: str = "max_f1",
                     cost_false_negative: float = 5.0, cost_false_positive: float = 1.0) -> float:
    """The decision threshold on validation scores: max F1, or least expected cost."""
    if rule not in ("max_f1", "expected_cost"):
        raise ValueError(f"rule must be 'max_f1' or 'expected_cost', got {rule!r}")
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    if rule == "max_f1":
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thresholds[int(np.argmax(f1[:-1]))])
    positives = labels.sum()
    costs = [cost_false_negative * positives * (1 - r) + cost_false_positive * (np.sum(scores >= t) - positives * r)
             for r, t in zip(recall[:-1], thresholds)]
    return float(thresholds[int(np.argmin(costs))])


def model_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """The report's metrics for one model's test scores at ``threshold``."""
    predicted = (scores >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
    top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
    base_rate = labels.mean()
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "f1": float(f1), "precision": float(precision), "recall": float(recall), "threshold": float(threshold),
        "top_decile_lift": float(labels[top].mean() / base_rate) if base_rate > 0 else 0.0,
        "top_decile_capture": float(labels[top].sum() / labels.sum()) if labels.sum() > 0 else 0.0,
        "brier": float(brier_score_loss(labels, scores)),
        "ece": float(binary_calibration_error(torch.tensor(scores, dtype=torch.float32),
                                              torch.tensor(labels, dtype=torch.long), n_bins=10)),
    }


def metrics_table(metrics: dict) -> pd.DataFrame:
    """``metrics.json`` as one row per model, the headline metrics rounded (for notebooks)."""
    columns = ["roc_auc", "pr_auc", "f1", "top_decile_lift", "brier", "ece", "threshold"]
    rows = [{"model": model, **{c: round(values[c], 4) for c in columns if c in values}}
            for model, values in metrics["models"].items()]
    return pd.DataFrame(rows)


def write_report(test: dict[str, Scores], thresholds: dict[str, float], test_snapshot: dt.date,
                 out_dir: str, config: Config | None = None) -> dict:
    """Write metrics.json, the PNG plots and report.html under ``out_dir`` (a path or URI;
    ``config`` gives an object store's endpoint and keys); return the metrics."""
    metrics = {"test_snapshot": test_snapshot.isoformat(),
               "models": {name: model_metrics(y, p, thresholds[name]) for name, (y, p) in test.items()}}
    storage.write_text(storage.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2), config)
    images = {}
    for name, draw in _PLOTS.items():
        png = _plot(draw, test)
        storage.write_bytes(storage.join(out_dir, f"{name}.png"), png, config)
        images[name] = base64.b64encode(png).decode()
    storage.write_text(storage.join(out_dir, "report.html"), _html(metrics, images), config)
    return metrics


def _plot(draw, test: dict[str, Scores]) -> bytes:
    figure, axes = plt.subplots(figsize=(5, 4))
    draw(axes, test)
    axes.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _roc(axes, test: dict[str, Scores]) -> None:
    for name, (y, p) in test.items():
        fpr, tpr, _ = roc_curve(y, p)
        axes.plot(fpr, tpr, label=name)
    axes.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    axes.set(title="ROC", xlabel="false positive rate", ylabel="true positive rate")


def _pr(axes, test: dict[str, Scores]) -> None:
    for name, (y, p) in test.items():
        precision, recall, _ = precision_recall_curve(y, p)
        axes.plot(recall, precision, label=name)
    axes.set(title="Precision-recall", xlabel="recall", ylabel="precision")


def _calibration(axes, test: dict[str, Scores]) -> None:
    for name, (y, p) in test.items():
        observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
        axes.plot(predicted, observed, marker="o", label=name)
    axes.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    axes.set(title="Calibration", xlabel="mean predicted", ylabel="observed churn rate")


def _lift(axes, test: dict[str, Scores]) -> None:
    for name, (y, p) in test.items():
        order = np.argsort(-p, kind="stable")
        share = np.arange(1, len(y) + 1) / len(y)
        axes.plot(share, np.cumsum(y[order]) / max(y.sum(), 1), label=name)
    axes.plot([0, 1], [0, 1], ":", color="grey", label="random")
    axes.set(title="Cumulative gains (lift)", xlabel="share of users contacted", ylabel="share of churners")


def _histogram(axes, test: dict[str, Scores]) -> None:
    name, (y, p) = next(iter(test.items()))
    for label, colour in ((0, "tab:blue"), (1, "tab:red")):
        axes.hist(p[y == label], bins=30, alpha=0.6, color=colour, label=f"{name}: label {label}")
    axes.set(title="Scores by label", xlabel="churn probability", ylabel="users")


_PLOTS = {"roc": _roc, "pr": _pr, "calibration": _calibration, "lift": _lift, "histogram": _histogram}


def _html(metrics: dict, images: dict[str, str]) -> str:
    names = list(next(iter(metrics["models"].values())))
    header = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(f"<tr><td>{html.escape(model)}</td>" + "".join(f"<td>{values[n]:.4f}</td>" for n in names)
                   + "</tr>" for model, values in metrics["models"].items())
    plots = "".join(f'<img alt="{k}" src="data:image/png;base64,{v}">' for k, v in images.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>churn-spark evaluation</title>"
            f"<style>body{{font-family:sans-serif}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd}}</style>"
            f"</head><body><h1>Churn model evaluation</h1><p>Test snapshot {metrics['test_snapshot']}</p>"
            f"<table><tr><th>model</th>{header}</tr>{rows}</table>{plots}</body></html>")
