"""Calibration: Platt and isotonic fitted on validation rows, chosen out of fold, applied anywhere."""

from __future__ import annotations

import numpy as np
import pytest

from churn_spark.calibrate import Calibration, choose_method, fit_calibration, out_of_fold_brier
from churn_spark.evaluate import bootstrap_intervals, expected_calibration_error


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def overconfident(n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn at sigmoid(z) and a model that says sigmoid(2z + 0.5): right ranking, twice
    too sure and shifted (the shape a class-weighted network has)."""
    random = np.random.default_rng(seed)
    z = random.normal(0, 1.5, n)
    return (random.uniform(size=n) < sigmoid(z)).astype(int), sigmoid(2 * z + 0.5)


def test_platt_recovers_the_inverse_of_a_logit_distortion() -> None:
    """logit(p) = 2z + 0.5, so the calibrated logit z is 0.5 logit(p) - 0.25."""
    labels, scores = overconfident()
    calibration = fit_calibration(labels, scores, "platt")
    assert calibration.method == "platt"
    assert calibration.slope == pytest.approx(0.5, abs=0.03)
    assert calibration.intercept == pytest.approx(-0.25, abs=0.05)
    assert expected_calibration_error(labels, scores) > 0.08
    assert expected_calibration_error(labels, calibration.apply(scores)) < 0.015


def test_isotonic_pools_the_violators_and_interpolates_between_knots() -> None:
    """Scikit-learn's pool-adjacent-violators on six hand rows: 0.3 (churned) and 0.4 (stayed)
    are out of order and pooled at 0.5."""
    calibration = fit_calibration(np.array([0, 0, 1, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), "isotonic")
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    calibrated = calibration.apply(scores)
    assert calibrated == pytest.approx([0, 0, 0.5, 0.5, 1, 1], abs=1e-6)
    assert calibration.apply(np.array([0.0, 0.25, 0.45, 0.99])) == pytest.approx([0, 0.25, 0.75, 1], abs=1e-6)
    # Users on one step keep their order (a millionth of the raw probability breaks the tie).
    assert (np.diff(calibrated) > 0).all() and 0 <= calibrated.min() and calibrated.max() <= 1


def test_auto_chooses_isotonic_for_a_shape_platt_cannot_follow() -> None:
    """Churn rate 5% below 0.2, 30% on the plateau 0.2-0.8, 95% above: two steps, which no
    sigmoid of the logit follows; out of fold, isotonic has the lower Brier score."""
    random = np.random.default_rng(1)
    scores = random.uniform(size=20_000)
    rate = np.where(scores < 0.2, 0.05, np.where(scores < 0.8, 0.3, 0.95))
    labels = (random.uniform(size=scores.size) < rate).astype(int)
    assert out_of_fold_brier(labels, scores, "isotonic") < out_of_fold_brier(labels, scores, "platt")
    assert choose_method(labels, scores) == "isotonic"
    calibrated = fit_calibration(labels, scores).apply(scores)
    assert expected_calibration_error(labels, calibrated) < 0.01


def test_auto_leaves_calibrated_scores_close_to_themselves() -> None:
    """Scores that already are probabilities: whatever auto picks moves none by more than 0.05."""
    random = np.random.default_rng(2)
    scores = random.uniform(0.02, 0.98, 20_000)
    labels = (random.uniform(size=scores.size) < scores).astype(int)
    calibrated = fit_calibration(labels, scores).apply(scores)
    assert np.abs(calibrated - scores).max() < 0.05


def test_a_calibration_is_plain_data_and_keeps_missing_values_missing() -> None:
    calibration = Calibration("platt", slope=0.5, intercept=-1.0)
    assert Calibration.from_dict(calibration.to_dict()) == calibration
    assert Calibration.from_dict(None) == Calibration()  # a bundle saved before calibration existed
    out = calibration.apply(np.array([0.5, np.nan, 0.0, 1.0]))
    assert out[0] == pytest.approx(sigmoid(-1.0)) and np.isnan(out[1]) and 0 < out[2] < out[3] < 1
    assert Calibration().apply(np.array([0.3])).tolist() == [0.3]


def test_one_class_validation_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="one class only"):
        fit_calibration(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]))


def test_bootstrap_intervals_equal_sklearn_on_the_same_resamples() -> None:
    """Counts per user at once give what sklearn gives on each resample's rows, ties included."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    generator = np.random.default_rng(3)
    labels = (generator.random(90) < 0.3).astype(int)
    scores = np.round(generator.random(90), 1)  # ten distinct scores: many ties
    rows = np.random.default_rng(5).integers(0, 90, (200, 90))  # the function's own draws
    got = bootstrap_intervals(labels, scores, resamples=200, seed=5)
    for name, metric in (("roc_auc", roc_auc_score), ("pr_auc", average_precision_score)):
        expected = np.quantile([metric(labels[r], scores[r]) for r in rows], [0.025, 0.975])
        assert got[name] == pytest.approx(tuple(expected), abs=1e-12), name


def test_bootstrap_intervals_bracket_the_metric_and_collapse_on_a_perfect_ranking() -> None:
    from sklearn.metrics import roc_auc_score

    labels, scores = overconfident(2_000)
    low, high = bootstrap_intervals(labels, scores, resamples=300)["roc_auc"]
    point = roc_auc_score(labels, scores)
    assert low < point < high and 0.01 < high - low < 0.06
    assert bootstrap_intervals(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), 50) == {
        "roc_auc": (1.0, 1.0), "pr_auc": (1.0, 1.0)}
    assert np.isnan(bootstrap_intervals(np.array([1, 1]), np.array([0.1, 0.2]), 20)["roc_auc"]).all()  # one class
