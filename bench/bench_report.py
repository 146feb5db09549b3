"""The report's bootstrap intervals: all resamples at once against sklearn in a loop.

    .venv/bin/python bench/bench_report.py --rows 1923 --resamples 1000 --repeats 3

What it measures. ``churn_spark.evaluate.bootstrap_intervals`` (ROC-AUC and PR-AUC, every
resample a count per user, one pass of weighted cumulative counts) against the reference it
replaced: per resample, the resampled rows passed to sklearn's ``roc_auc_score`` and
``average_precision_score``. Both use the same resamples; the script checks that the intervals
agree (to 1e-12) before timing anything. Rows are seeded: labels at a churn rate of 0.32 (the
Online Retail test snapshot's) and scores rounded to 3 decimals (ties, as calibrated
probabilities have). It prints each repeat's seconds and the medians, and the ratio reference
time / vectorised time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from churn_spark.evaluate import bootstrap_intervals


def reference(labels: np.ndarray, scores: np.ndarray, resamples: int, seed: int = 0) -> dict[str, tuple]:
    """The loop over sklearn, on the draws ``bootstrap_intervals`` makes."""
    rows = np.random.default_rng(seed).integers(0, len(labels), (resamples, len(labels)))
    values: dict[str, list[float]] = {"roc_auc": [], "pr_auc": []}
    for drawn in rows:
        if labels[drawn].min() != labels[drawn].max():
            values["roc_auc"].append(roc_auc_score(labels[drawn], scores[drawn]))
            values["pr_auc"].append(average_precision_score(labels[drawn], scores[drawn]))
    return {name: tuple(float(q) for q in np.quantile(found, [0.025, 0.975])) for name, found in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1923, help="users in the test snapshot (default 1923)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    generator = np.random.default_rng(7)
    labels = (generator.random(args.rows) < 0.32).astype(int)
    scores = np.round(np.clip(0.32 + 0.25 * (labels - 0.32) + generator.normal(0, 0.2, args.rows), 0, 1), 3)

    got, expected = bootstrap_intervals(labels, scores, args.resamples), reference(labels, scores, args.resamples)
    for name in expected:
        assert np.allclose(got[name], expected[name], atol=1e-12, rtol=0), (name, got[name], expected[name])

    timings: dict[str, list[float]] = {"vectorised": [], "sklearn loop": []}
    for _ in range(args.repeats):
        for name, run in (("vectorised", bootstrap_intervals), ("sklearn loop", reference)):
            began = time.perf_counter()
            run(labels, scores, args.resamples)
            timings[name].append(time.perf_counter() - began)
    for name, seconds in timings.items():
        print(f"{name}: {' / '.join(f'{s:.3f}' for s in seconds)} s, median {statistics.median(seconds):.3f} s")
    ratio = statistics.median(timings["sklearn loop"]) / statistics.median(timings["vectorised"])
    print(f"{args.rows} rows, {args.resamples} resamples: the sklearn loop takes {ratio:.0f}x the vectorised time")


if __name__ == "__main__":
    main()
