"""Evaluation on the test snapshot: metrics, plots, one self-contained HTML report, metrics.json.

Metrics come from scikit-learn (ROC-AUC, PR-AUC, precision/recall/F1, Brier) and torchmetrics
(expected calibration error); lift and capture rate are ratios of counts over the top decile.
ROC-AUC and PR-AUC carry percentile-bootstrap 95% intervals (test users resampled with
replacement), and calibration is shown before and after: ``ece_before`` and the reliability
diagram of each model's own probabilities beside those of the calibrated ones.
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


def bootstrap_intervals(labels: np.ndarray, scores: np.ndarray, resamples: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile-bootstrap intervals of ROC-AUC and PR-AUC (``roc_auc``, ``pr_auc``): users
    resampled with replacement ``resamples`` times, both metrics on the same resamples (one
    holding a single class is skipped); NaNs with none.

    A resample is a count per user, so both metrics are computed for all resamples at once:
    weighted true- and false-positive counts at each distinct score, in the score's order,
    give the same values as sklearn's ``roc_auc_score`` and ``average_precision_score`` on the
    resampled rows (a loop over those took seconds per model; this takes milliseconds).
    """
    labels, scores = np.asarray(labels, dtype=float), np.asarray(scores, dtype=float)
    n = len(labels)
    order = np.argsort(-scores, kind="stable")
    ranked, positive = scores[order], labels[order]
    ends = np.r_[np.flatnonzero(np.diff(ranked) != 0), n - 1]  # the last row of each distinct score
    draws = np.random.default_rng(seed).integers(0, n, (resamples, n))
    values: dict[str, list[np.ndarray]] = {"roc_auc": [], "pr_auc": []}
    chunk = max(1, 4_000_000 // max(n, 1))  # resamples per step: a few million counts in memory at most
    for first in range(0, resamples, chunk):
        rows = draws[first:first + chunk]
        offsets = np.arange(len(rows))[:, None] * n
        counts = np.bincount((rows + offsets).ravel(), minlength=len(rows) * n).reshape(len(rows), n)[:, order]
        tp = np.cumsum(counts * positive, axis=1)[:, ends]
        fp = np.cumsum(counts * (1 - positive), axis=1)[:, ends]
        both = (tp[:, -1] > 0) & (fp[:, -1] > 0)
        tp, fp = tp[both], fp[both]
        tpr = np.hstack([np.zeros((len(tp), 1)), tp / tp[:, -1:]])
        fpr = np.hstack([np.zeros((len(fp), 1)), fp / fp[:, -1:]])
        values["roc_auc"].append(np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2, axis=1))
        # Precision where a score holds no resampled user is never weighted (recall does not move there).
        precision = np.divide(tp, tp + fp, out=np.ones_like(tp), where=tp + fp > 0)
        values["pr_auc"].append(np.sum(np.diff(tpr, axis=1) * precision, axis=1))
    out = {}
    for name, parts in values.items():
        found = np.concatenate(parts) if parts else np.array([])
        if not len(found):
            out[name] = (float("nan"), float("nan"))
            continue
        low, high = np.quantile(found, [(1 - level) / 2, (1 + level) / 2])
        out[name] = (float(low), float(high))
    return out


def expected_calibration_error(labels: np.ndarray, scores: np.ndarray) -> float:
    """ECE over 10 equal-width bins (torchmetrics)."""
    return float(binary_calibration_error(torch.tensor(scores, dtype=torch.float32),
                                          torch.tensor(labels, dtype=torch.long), n_bins=10))


def model_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float, resamples: int = 0,
                  before: np.ndarray | None = None) -> dict[str, float]:
    """The report's metrics for one model's test scores at ``threshold``; with ``resamples``,
    the bootstrap 95% intervals of ROC-AUC and PR-AUC; with ``before`` (the model's own
    probabilities, before calibration), their ECE."""
    predicted = (scores >= threshold).astype(int)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="binary", zero_division=0)
    top = np.argsort(-scores, kind="stable")[: max(1, len(scores) // 10)]
    base_rate = labels.mean()
    out = {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "pr_auc": float(average_precision_score(labels, scores)),
        "f1": float(f1), "precision": float(precision), "recall": float(recall), "threshold": float(threshold),
        "top_decile_lift": float(labels[top].mean() / base_rate) if base_rate > 0 else 0.0,
        "top_decile_capture": float(labels[top].sum() / labels.sum()) if labels.sum() > 0 else 0.0,
        "brier": float(brier_score_loss(labels, scores)),
        "ece": expected_calibration_error(labels, scores),
    }
    if before is not None:
        out["ece_before"] = expected_calibration_error(labels, before)
    if resamples:
        for name, (low, high) in bootstrap_intervals(labels, scores, resamples).items():
            out[f"{name}_low"], out[f"{name}_high"] = low, high
    return out


def metrics_table(metrics: dict) -> pd.DataFrame:
    """``metrics.json`` as one row per model, the headline metrics rounded (for notebooks)."""
    columns = ["roc_auc", "roc_auc_low", "roc_auc_high", "pr_auc", "f1", "top_decile_lift", "brier", "ece",
               "ece_before", "valid_roc_auc", "threshold"]
    rows = [{"model": model, **{c: round(values[c], 4) for c in columns if c in values}}
            for model, values in metrics["models"].items()]
    return pd.DataFrame(rows)


def write_report(test: dict[str, Scores], thresholds: dict[str, float], test_snapshot: dt.date,
                 out_dir: str, config: Config | None = None, before: dict[str, np.ndarray] | None = None,
                 facts: dict | None = None, resamples: int = 0) -> dict:
    """Write metrics.json, the PNG plots and report.html under ``out_dir`` (a path or URI;
    ``config`` gives an object store's endpoint and keys); return the metrics.

    ``before`` holds, per calibrated model, its test probabilities before calibration (for
    ``ece_before`` and the "before" reliability diagram); ``facts`` adds top-level entries
    (the champion, each model's calibration and validation ROC-AUC); ``resamples`` is the
    number of bootstrap resamples behind the intervals (0: none).
    """
    before = before or {}
    metrics = {"test_snapshot": test_snapshot.isoformat(), **(facts or {}),
               "models": {name: model_metrics(y, p, thresholds[name], resamples, before.get(name))
                          for name, (y, p) in test.items()}}
    storage.write_text(storage.join(out_dir, "metrics.json"), json.dumps(metrics, indent=2), config)
    drawn = {**{name: (draw, test) for name, draw in _PLOTS.items()},
             "calibration_before": (_calibration_before, {n: (test[n][0], p) for n, p in before.items()})}
    images = {}
    for name, (draw, data) in drawn.items():
        if not data:
            continue
        png = _plot(draw, data)
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


def _calibration(axes, test: dict[str, Scores], title: str = "Calibration (as scored)") -> None:
    for name, (y, p) in test.items():
        observed, predicted = calibration_curve(y, p, n_bins=10, strategy="quantile")
        axes.plot(predicted, observed, marker="o", label=name)
    axes.plot([0, 1], [0, 1], ":", color="grey", label="perfect")
    axes.set(title=title, xlabel="mean predicted", ylabel="observed churn rate")


def _calibration_before(axes, test: dict[str, Scores]) -> None:
    _calibration(axes, test, "Calibration before (the models' own)")


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


_COLUMN_ORDER = ["roc_auc", "roc_auc_low", "roc_auc_high", "pr_auc", "pr_auc_low", "pr_auc_high", "valid_roc_auc",
                 "ece", "ece_before", "brier", "f1", "precision", "recall", "threshold", "top_decile_lift",
                 "top_decile_capture"]


def _html(metrics: dict, images: dict[str, str]) -> str:
    names = sorted({n for values in metrics["models"].values() for n in values},
                   key=lambda n: (_COLUMN_ORDER.index(n) if n in _COLUMN_ORDER else len(_COLUMN_ORDER), n))
    header = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(f"<tr><td>{html.escape(model)}</td>"
                   + "".join(f"<td>{values[n]:.4f}</td>" if n in values else "<td></td>" for n in names)
                   + "</tr>" for model, values in metrics["models"].items())
    champion = (f"<p>Champion (best ROC-AUC on validation): {html.escape(str(metrics['champion']))}. "
                "Intervals are bootstrap 95% (low, high).</p>" if "champion" in metrics else "")
    plots = "".join(f'<img alt="{k}" src="data:image/png;base64,{v}">' for k, v in images.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>churn-spark evaluation</title>"
            f"<style>body{{font-family:sans-serif}}td,th{{padding:4px 8px;border-bottom:1px solid #ddd}}</style>"
            f"</head><body><h1>Churn model evaluation</h1><p>Test snapshot {metrics['test_snapshot']}</p>{champion}"
            f"<table><tr><th>model</th>{header}</tr>{rows}</table>{plots}</body></html>")
