"""Drift: reference distributions frozen with a model, and the drift of each scoring run from them.

When a model is trained, ``reference`` freezes per feature about ``BINS`` quantile bins (the
interior cut points of the reference rows' deciles; a category keeps its values, with one bin
for any value unseen) and each bin's share of the reference rows; the model's own probability
is binned the same way. The reference rows are the run's test snapshot: the newest labelled
population, which the model was measured on, and the population the next scoring runs resemble.
The reference travels in the model's bundle (``Bundle.reference``), so a registered version
carries its own.

A scoring run measures each feature's distribution over the scored population (the users in
the model's population, ``score.in_population``) against the reference with ``measure``: every
row's bin of every feature and of its probability is counted in one Spark aggregation, and the
population stability index (PSI) and Jensen-Shannon distance (base 2, in [0, 1]) follow from
the few counts, one row per feature in Delta ``drift_metrics`` (the probability's under
``SCORE``). A missing value is a bin of its own, in both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

BINS = 10  # quantile bins per numeric feature (fewer where the reference's deciles tie)
SCORE = "churn_probability"  # the drift_metrics row of the model's own score
MISSING = -1  # the bin of a missing value (null or NaN)
_FLOOR = 1e-4  # a share below this counts as this in PSI (an empty bin would make it infinite)


def reference(rows: DataFrame, numeric: Sequence[str], categorical: Sequence[str]) -> dict[str, Any]:
    """Bins and shares of ``rows`` (Spark): ``{"numeric": {name: {"edges", "shares"}},
    "categorical": {name: {"values", "shares"}}, "rows": n}``; ``shares`` are per bin, the
    missing bin first (``bin_of`` numbers them)."""
    quantiles = [k / BINS for k in range(1, BINS)]
    finite = [F.when(~F.isnan(F.col(c).cast("double")), F.col(c).cast("double")) for c in numeric]
    cuts = rows.agg(*[F.percentile_approx(value, quantiles, 10_000).alias(c)
                      for value, c in zip(finite, numeric, strict=True)],
                    *[F.array_sort(F.collect_set(c)).alias(c) for c in categorical]).first()
    bins = {"numeric": {c: {"edges": sorted(set(cuts[c] or []))} for c in numeric},
            "categorical": {c: {"values": list(cuts[c] or [])} for c in categorical}}
    counts, total = bin_counts(rows, bins)
    for group in ("numeric", "categorical"):
        for name, spec in bins[group].items():
            spec["shares"] = (counts[name] / max(total, 1)).tolist()
    return {**bins, "rows": total}


def with_score(frozen: dict[str, Any], scored: DataFrame) -> dict[str, Any]:
    """``frozen`` (the features' reference) with the bins and shares of a model's probabilities
    (``scored``'s ``SCORE`` column) on the same rows, under ``"score"``."""
    return {**frozen, "score": reference(scored, [SCORE], [])["numeric"][SCORE]}


def bin_of(value: Column, spec: dict[str, Any], numeric: bool) -> Column:
    """The bin of ``value`` under ``spec``: ``MISSING`` for a missing value; for a number, how
    many edges it is at or above (0 .. len(edges)); for a category, its index in ``values``, or
    ``len(values)`` for one unseen."""
    if numeric:
        number = value.cast("double")
        # One array and a filter, not a sum of comparisons: with ~80 features the sums grew the
        # generated code past the JVM's 64 KB method limit (Janino failed; Spark fell back).
        edges = F.array(*[F.lit(float(edge)) for edge in spec["edges"]])
        above = F.size(F.filter(edges, lambda edge: number >= edge)) if spec["edges"] else F.lit(0)
        return F.when(number.isNull() | F.isnan(number), F.lit(MISSING)).otherwise(above)
    values = spec["values"]
    lookup = F.create_map(*[x for i, v in enumerate(values) for x in (F.lit(v), F.lit(i))]) if values else None
    index = F.coalesce(lookup[value], F.lit(len(values))) if lookup is not None else F.lit(0)
    return F.when(value.isNull(), F.lit(MISSING)).otherwise(index)


def bin_counts(rows: DataFrame, bins: dict[str, Any]) -> tuple[dict[str, np.ndarray], int]:
    """Per feature (and the ``SCORE`` column where ``bins`` has a ``"score"``) the count of rows
    in each bin, the missing bin first; and the number of rows. One aggregation: each row
    becomes one (feature, bin) pair per feature, grouped and counted."""
    columns = [(name, bin_of(F.col(name), spec, True), len(spec["edges"]) + 2)
               for name, spec in bins["numeric"].items()]
    columns += [(name, bin_of(F.col(name), spec, False), len(spec["values"]) + 2)
                for name, spec in bins["categorical"].items()]
    if "score" in bins:
        columns.append((SCORE, bin_of(F.col(SCORE), bins["score"], True), len(bins["score"]["edges"]) + 2))
    pairs = F.array(*[F.struct(F.lit(name).alias("feature"), bin_.cast("int").alias("bin"))
                      for name, bin_, _ in columns])
    counted = (rows.select(F.explode(pairs).alias("pair")).groupBy("pair.feature", "pair.bin")
               .agg(F.count(F.lit(1)).alias("rows")).collect())
    counts = {name: np.zeros(width) for name, _, width in columns}
    for row in counted:
        counts[row["feature"]][row["bin"] - MISSING] += row["rows"]
    total = int(counts[columns[0][0]].sum()) if columns else rows.count()
    return counts, total


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins (shares summing to 1):
    sum over bins of (actual - expected) * ln(actual / expected), shares floored at ``_FLOOR``."""
    e, a = np.maximum(np.asarray(expected, float), _FLOOR), np.maximum(np.asarray(actual, float), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Jensen-Shannon distance (the square root of the divergence, base 2: 0 same, 1 disjoint)."""
    e, a = np.asarray(expected, float), np.asarray(actual, float)
    m = (e + a) / 2

    def kl(p: np.ndarray) -> float:
        held = p > 0
        return float(np.sum(p[held] * np.log2(p[held] / m[held])))

    return math.sqrt(max((kl(e) + kl(a)) / 2, 0.0))


def measure(rows: DataFrame, frozen: dict[str, Any]) -> list[dict[str, Any]]:
    """Each feature's and the score's drift of ``rows`` (holding the features and ``SCORE``) from
    ``frozen`` (a model's reference): ``{"feature", "psi", "js_distance", "rows"}`` per feature,
    the score's last."""
    counts, total = bin_counts(rows, frozen)
    expected = {**{n: s["shares"] for n, s in frozen["numeric"].items()},
                **{n: s["shares"] for n, s in frozen["categorical"].items()}, SCORE: frozen["score"]["shares"]}
    out = []
    for name, observed in counts.items():
        actual = observed / max(total, 1)
        out.append({"feature": name, "psi": psi(expected[name], actual),
                    "js_distance": js_distance(expected[name], actual), "rows": total})
    return out
