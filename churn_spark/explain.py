"""Why a user scores high: per-feature contributions to the logit, and readable reasons.

Contributions are gradient x input, taken in the model's input space, against the average
training user: a standardised numeric feature's baseline is 0 (the training mean), a
categorical feature's baseline is the mean of its embedding rows. For the logistic regression
this is exact (coefficient x standardised value; category weight minus the mean weight, and
the contributions sum to the logit minus the average user's logit); for the MLP it is the
first-order view of the same thing.

Reasons turn the top contributions into text an operations team reads, with the user's value
and the typical (training mean) value: "purchases fell 60% vs the previous 30 days",
"last purchase 75 days ago (typical 21)".
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from churn_spark.features.catalogue import Feature
from churn_spark.train.preprocess import Preprocessing


def attributions(network: nn.Module, numeric: np.ndarray, categories: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and each input's contribution to them.

    Parameters
    ----------
    network
        A model from ``churn_spark.train.model`` (it has ``embed``, ``head`` and ``category_tables``).
    numeric, categories
        Model inputs as ``churn_spark.train.preprocess.to_arrays`` makes them.

    Returns
    -------
    The logits (rows,), as the network computes them, and contributions (rows, numeric +
    categorical columns) as float64.
    """
    x = torch.from_numpy(numeric).requires_grad_(True)
    with torch.no_grad():
        embedded = network.embed(torch.from_numpy(categories))
        centres = [_centre(table.weight) for table in network.category_tables()]
    embedded = [e.requires_grad_(True) for e in embedded]
    logits = network.head(x, embedded)
    grads = torch.autograd.grad(logits.sum(), [x, *embedded]) if len(logits) else [x, *embedded]
    with torch.no_grad():
        parts = [grads[0] * x, *[(g * (e - c)).sum(-1, keepdim=True)
                                 for g, e, c in zip(grads[1:], embedded, centres)]]
        contributions = torch.cat(parts, dim=1)
    return logits.detach(), contributions.numpy().astype("float64")


def _centre(weight: torch.Tensor) -> torch.Tensor:
    """The mean embedding of the known values (row 0 is the unknown slot, never trained)."""
    return weight[1:].mean(0) if len(weight) > 1 else torch.zeros(weight.shape[1])


def top_reasons(contributions: np.ndarray, k: int) -> list[list[int]]:
    """Per row, the columns of its ``k`` largest positive contributions, largest first."""
    k = min(k, contributions.shape[1])
    if k == 0:
        return [[] for _ in range(len(contributions))]
    if k < contributions.shape[1]:  # the k largest of each row, then those k in order
        part = np.argpartition(-contributions, k - 1, axis=1)[:, :k]
        rank = np.argsort(-np.take_along_axis(contributions, part, axis=1), axis=1, kind="stable")
        order = np.take_along_axis(part, rank, axis=1)
    else:
        order = np.argsort(-contributions, axis=1, kind="stable")
    keep = np.take_along_axis(contributions, order, axis=1) > 0
    return [row[mask].tolist() for row, mask in zip(order, keep)]


class ReasonWriter:
    """Readable text for a feature's value, next to its typical (training mean) value."""

    def __init__(self, features: list[Feature], preprocessing: Preprocessing, history_days: int) -> None:
        by_name = {f.name: f for f in features}
        self._texts: dict[str, Callable[[object], str]] = {}
        for name in [*preprocessing.numeric, *preprocessing.categorical]:
            typical = preprocessing.numeric.get(name, (0.0, 0.0))[0]
            feature = by_name.get(name)
            meaning = feature.meaning if feature else name.replace("_", " ")
            self._texts[name] = _formatter(name, meaning, typical, history_days)

    def text(self, name: str, value: object) -> str:
        return self._texts[name](value)


def _formatter(name: str, meaning: str, typical: float, history: int) -> Callable[[object], str]:
    """A function from the user's value to the reason text for feature ``name``."""
    short = _short(meaning)
    if match := re.fullmatch(r"days from the last (.+) to T(, capped at \d+)?", short):
        what = match.group(1)
        return lambda v: (f"no {what} in the last {history} days" if float(v) >= history
                          else f"last {what} {float(v):.0f} days ago (typical {typical:.0f})")
    if match := re.fullmatch(r"1 if the user has an? (.+) in the \d+ days before T", meaning):
        what = match.group(1)
        return lambda v: f"no {what} in the last {history} days" if float(v) == 0 else f"a {what} in the last {history} days"
    if name.endswith("_trend_30d"):
        return lambda v: _trend(name.removesuffix("_trend_30d"), float(v))
    if name in {"gender", "region", "membership_level", "age_band"}:
        return lambda v: f"{name.replace('_', ' ')}: {v}"
    if match := re.fullmatch(r"(low_rating_share|rating_mean|sentiment_mean|service_unresolved)_(\d+)d", name):
        kind, days = match.groups()
        return {
            "low_rating_share": lambda v: f"{float(v):.0%} of reviews in the last {days} days rated 2 stars or less "
                                          f"(typical {typical:.0%})",
            "rating_mean": lambda v: f"mean review rating {float(v):.1f} stars in the last {days} days "
                                     f"(typical {typical:.1f})",
            "sentiment_mean": lambda v: f"review sentiment {float(v):+.2f} in the last {days} days, -1 to 1 "
                                        f"(typical {typical:+.2f})",
            "service_unresolved": lambda v: f"unresolved service contacts in the last {days} days: "
                                            f"{_number(float(v))} (typical {_number(typical)})",
        }[kind]
    special = {
        "overdue_ratio": lambda v: f"time since the last purchase is {float(v):.1f}x the usual gap (typical {typical:.1f}x)",
        "tenure_days": lambda v: f"customer for {float(v):.0f} days (typical {typical:.0f})",
    }
    if name in special:
        return special[name]
    if short.startswith("share of") or name.startswith("channel_share"):
        return lambda v: f"{short}: {float(v):.0%} (typical {typical:.0%})"
    return lambda v: f"{short}: {_number(float(v))} (typical {_number(typical)})"


def _short(meaning: str) -> str:
    """A catalogue meaning as a reason's subject: no parentheses, "before T" as "last N days"."""
    text = re.sub(r"\s*\([^)]*\)", "", meaning)
    return re.sub(r"in the (\d+) days before T", r"in the last \1 days", text)


def _trend(what: str, t: float) -> str:
    """(last - before) / (last + before) as the change of the last 30 days vs the 30 before."""
    if t <= -0.9999:
        return f"{what} stopped vs the previous 30 days"
    if t >= 0.9999:
        return f"{what} started in the last 30 days"
    change = 2 * t / (1 - t)
    if abs(change) < 0.005:
        return f"{what} flat vs the previous 30 days"
    return f"{what} {'fell' if change < 0 else 'rose'} {abs(change):.0%} vs the previous 30 days"


def _number(value: float) -> str:
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
