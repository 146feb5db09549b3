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

import math
import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
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


def top_reasons(contributions: np.ndarray, k: int, groups: Sequence[str] | None = None) -> list[list[int]]:
    """Per row, the columns of its ``k`` largest positive contributions, largest first.

    Parameters
    ----------
    contributions
        (rows, columns), as ``attributions`` gives them; a column that may not be a reason for
        a row holds 0 there (see ``ReasonWriter.explainable``).
    k
        The most reasons per row.
    groups
        Per column, the group of features saying the same thing; a row's reasons hold at most
        one column of a group, the strongest (None: every column is its own group).
    """
    rows, columns = contributions.shape
    k = min(k, columns)
    if k == 0:
        return [[] for _ in range(rows)]
    order = np.argsort(-contributions, axis=1, kind="stable")
    positive = np.take_along_axis(contributions, order, axis=1) > 0
    chosen: list[list[int]] = []
    for row, mask in zip(order, positive):
        picked: list[int] = []
        seen: set[str] = set()
        for column in row[mask]:
            group = groups[column] if groups is not None else str(column)
            if group not in seen:
                seen.add(group)
                picked.append(int(column))
                if len(picked) == k:
                    break
        chosen.append(picked)
    return chosen


class ReasonWriter:
    """Which features may be a user's reasons, and their text, next to the typical (training mean) value.

    A feature is never a reason where its value says nothing the team can act on: missing or not
    a finite number, at the feature's "none" value (no events to compute it from, an unknown
    profile value), a category the model never saw, or a feature declared ``reason=False``.
    Features of one ``reason_group`` say the same thing; a user's reasons name one of them.
    """

    def __init__(self, features: list[Feature], preprocessing: Preprocessing, history_days: int) -> None:
        by_name = {f.name: f for f in features}
        self.names = [*preprocessing.numeric, *preprocessing.categorical]
        self._vocabularies = {name: set(values) for name, values in preprocessing.categorical.items()}
        self._features = {name: by_name.get(name) for name in self.names}
        self.groups = [f.reason_group if f else name for name, f in self._features.items()]
        self._texts: dict[str, tuple[str, Callable[[object], str]]] = {}
        for name, feature in self._features.items():
            typical = preprocessing.numeric.get(name, (0.0, 0.0))[0]
            meaning = feature.meaning if feature else name.replace("_", " ")
            self._texts[name] = _formatter(name, meaning, typical, history_days)

    def explainable(self, features: pd.DataFrame) -> np.ndarray:
        """(rows, model inputs): whether each input of each row may be given as a reason."""
        masks = []
        for name in self.names:
            values, feature = features[name], self._features[name]
            if name in self._vocabularies:
                mask = values.isin(self._vocabularies[name]).to_numpy()
            else:
                mask = np.isfinite(pd.to_numeric(values, errors="coerce").to_numpy("float64", na_value=np.nan))
            if feature is not None:
                mask = mask & (values != feature.none).to_numpy() & feature.reason
            masks.append(mask)
        return np.column_stack(masks) if masks else np.zeros((len(features), 0), bool)

    def text(self, name: str, value: object) -> str:
        """The reason text of ``value`` of feature ``name``; never raises on any value."""
        label, write = self._texts[name]
        try:
            return write(value)
        except (TypeError, ValueError, OverflowError):
            return f"{label}: {value}"

    def label(self, name: str) -> str:
        """What a reason on feature ``name`` is about, in words (the manager's report counts these)."""
        return self._texts[name][0] if name in self._texts else name.replace("_", " ")


def reason_labels(names: Sequence[str], features: list[Feature], history_days: int) -> dict[str, str]:
    """What reasons on each feature of ``names`` are about, in words: "time since the last
    purchase", "money spent in the last 30 days" (the manager's report counts these)."""
    by_name = {f.name: f for f in features}
    return {name: _formatter(name, by_name[name].meaning if name in by_name else name.replace("_", " "),
                             0.0, history_days)[0] for name in names}


def _formatter(name: str, meaning: str, typical: float, history: int) -> tuple[str, Callable[[object], str]]:
    """The subject of feature ``name``'s reasons, and a function from the user's value to the text."""
    short = _short(meaning)
    if match := re.fullmatch(r"days from the last (.+) to T(, capped at \d+)?", short):
        what = match.group(1)
        return f"time since the last {what}", lambda v: (
            f"no {what} in the last {history} days" if float(v) >= history
            else f"last {what} {float(v):.0f} days ago (typical {_number(typical, 0)})")
    if match := re.fullmatch(r"1 if the user has an? (.+) in the \d+ days before T", meaning):
        what = match.group(1)
        return f"{what} in the last {history} days", lambda v: (
            f"no {what} in the last {history} days" if float(v) == 0 else f"a {what} in the last {history} days")
    if name.endswith("_trend_30d"):
        what = name.removesuffix("_trend_30d")
        return f"{what} vs the previous 30 days", lambda v: _trend(what, float(v))
    if name in {"gender", "region", "membership_level", "age_band"}:
        return name.replace("_", " "), lambda v: f"{name.replace('_', ' ')}: {v}"
    if match := re.fullmatch(r"(low_rating_share|rating_mean|sentiment_mean|service_unresolved)_(\d+)d", name):
        kind, days = match.groups()
        return {
            "low_rating_share": (f"reviews rated 2 stars or less in the last {days} days",
                                 lambda v: f"{float(v):.0%} of reviews in the last {days} days rated 2 stars or "
                                           f"less (typical {_share(typical)})"),
            "rating_mean": (f"mean review rating in the last {days} days",
                            lambda v: f"mean review rating {float(v):.1f} stars in the last {days} days "
                                      f"(typical {_number(typical, 1)})"),
            "sentiment_mean": (f"review sentiment in the last {days} days",
                               lambda v: f"review sentiment {float(v):+.2f} in the last {days} days, -1 to 1 "
                                         f"(typical {_number(typical, 2, '+')})"),
            "service_unresolved": (f"unresolved service contacts in the last {days} days",
                                   lambda v: f"unresolved service contacts in the last {days} days: "
                                             f"{_number(float(v))} (typical {_number(typical)})"),
        }[kind]
    special = {
        "overdue_ratio": ("time since the last purchase over the usual gap",
                          lambda v: f"time since the last purchase is {float(v):.1f}x the usual gap "
                                    f"(typical {_number(typical, 1)}x)"),
        "tenure_days": ("time as a customer",
                        lambda v: f"customer for {float(v):.0f} days (typical {_number(typical, 0)})"),
        "repeat_purchase_days": (f"days with a repeat purchase in the last {history} days",
                                 lambda v: f"bought again on {float(v):.0f} days in the last {history} days "
                                           f"(typical {_number(typical, 0)})"),
        "purchase_span_days": (f"time between the first and the last purchase in the last {history} days",
                               lambda v: f"{float(v):.0f} days between the first and the last purchase in the last "
                                         f"{history} days (typical {_number(typical, 0)})"),
        "first_purchase_age_days": (f"time since the first purchase in the last {history} days",
                                    lambda v: f"first purchase in the last {history} days made {float(v):.0f} days "
                                              f"ago (typical {_number(typical, 0)})"),
        "bgnbd_p_alive": ("chance of still being a customer, by the buying rhythm (BG/NBD)",
                          lambda v: f"{float(v):.0%} chance of still being a customer by their buying rhythm "
                                    f"(typical {_share(typical)})"),
        "bgnbd_p_no_purchase": ("chance of no purchase in the horizon, by the buying rhythm (BG/NBD)",
                                lambda v: f"{float(v):.0%} chance of no purchase in the horizon by their buying "
                                          f"rhythm (typical {_share(typical)})"),
        "bgnbd_expected_purchases": ("expected purchases in the horizon, by the buying rhythm (BG/NBD)",
                                     lambda v: f"{float(v):.1f} purchases expected in the horizon by their buying "
                                               f"rhythm (typical {_number(typical, 1)})"),
        "days_since_first_event": ("time since the first event",
                                   lambda v: f"first event {float(v):.0f} days ago (typical {_number(typical, 0)})"),
    }
    if name in special:
        return special[name]
    if short.startswith("share of") or name.startswith("channel_share"):
        return short, lambda v: f"{short}: {float(v):.0%} (typical {_share(typical)})"
    return short, lambda v: f"{short}: {_number(float(v))} (typical {_number(typical)})"


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


def _number(value: float, digits: int | None = None, sign: str = "") -> str:
    """A value for a reason: whole numbers without decimals, else 2 (or ``digits``); any float."""
    if not math.isfinite(value):
        return "unknown"
    if digits is not None:
        return f"{value:{sign}.{digits}f}"
    whole = abs(value - round(value)) < 1e-9
    return f"{value:{sign}.0f}" if whole or abs(value) >= 100 else f"{value:{sign}.2f}"


def _share(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else "unknown"
