"""Calibration: a model's scores turned into probabilities a manager can read as probabilities.

A network trained with a positive-class weight, or a boosted tree ensemble, ranks users well
but its scores are not frequencies: of the users it gives 0.6, far fewer or far more than 60%
churn. Tiers, alerts and revenue at risk read them as probabilities, so each model is
calibrated after training on the validation snapshot (never on the test one), with one of:

- ``platt``: a logistic regression on the model's logit, ``sigmoid(a * logit + b)``: two
  numbers, smooth, keeps the ranking;
- ``isotonic``: the best non-decreasing step function of the score (scikit-learn's
  ``IsotonicRegression``), stored as its knots and applied by linear interpolation; it can
  fix any monotone distortion but needs more rows. A step alone would tie every user on it
  (a lower ROC-AUC, quantile tiers that cannot split the step), so the map applied is
  ``(1 - 1e-6) * step(p) + 1e-6 * p``: within a millionth of the step, and strictly
  increasing, so the model's ranking is kept exactly;
- ``none``: the identity.

``auto`` chooses by the Brier score of out-of-fold predictions on the validation rows (five
stratified folds), so that the choice is not made on the same rows a method was fitted to;
the chosen method is then refitted on all of them. The result is plain data stored in the
model bundle and applied wherever the model scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["none", "platt", "isotonic"]
METHODS: tuple[Method, ...] = ("none", "platt", "isotonic")
_EPS = 1e-7
TIE_BREAK = 1e-6  # the share of the raw probability in an isotonic map (see the module docstring)


@dataclass(frozen=True)
class Calibration:
    """A fitted map from a model's probability to a calibrated one."""

    method: Method = "none"
    slope: float = 1.0  # platt: sigmoid(slope * logit(p) + intercept)
    intercept: float = 0.0
    knots_x: tuple[float, ...] = ()  # isotonic: p -> interpolated between these knots
    knots_y: tuple[float, ...] = ()

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64) of ``probabilities``; strictly increasing in
        them (the ranking is kept), a NaN stays NaN."""
        p = np.asarray(probabilities, dtype="float64")
        if self.method == "platt":
            return _sigmoid(self.slope * _logit(p) + self.intercept)
        if self.method == "isotonic":
            step = np.interp(p, self.knots_x, self.knots_y)  # clipped to the end knots, as scikit-learn does
            return (1 - TIE_BREAK) * step + TIE_BREAK * p
        return p

    def to_dict(self) -> dict:
        return {"method": self.method, "slope": self.slope, "intercept": self.intercept,
                "knots_x": list(self.knots_x), "knots_y": list(self.knots_y)}

    @classmethod
    def from_dict(cls, state: dict | None) -> Calibration:
        if not state:
            return cls()
        return cls(state["method"], float(state["slope"]), float(state["intercept"]),
                   tuple(map(float, state["knots_x"])), tuple(map(float, state["knots_y"])))


def fit_calibration(labels: np.ndarray, probabilities: np.ndarray, method: Method | Literal["auto"] = "auto",
                    folds: int = 5, seed: int = 0) -> Calibration:
    """The calibration of ``probabilities`` (a model's, on the validation rows) to ``labels``.

    Parameters
    ----------
    labels, probabilities
        The validation rows' labels (0/1) and the model's uncalibrated probabilities.
    method
        ``platt``, ``isotonic`` or ``none``; ``auto`` picks the one whose out-of-fold
        predictions have the lowest Brier score (ties go to the simpler method).

    Raises
    ------
    ValueError
        If the labels hold a single class or the arrays differ in length.
    """
    y = np.asarray(labels, dtype="int64")
    p = np.asarray(probabilities, dtype="float64")
    if len(y) != len(p):
        raise ValueError(f"calibration: {len(y)} labels but {len(p)} probabilities")
    if len(np.unique(y)) < 2:
        raise ValueError("calibration: the validation labels hold one class only")
    if method == "auto":
        method = choose_method(y, p, folds, seed)
    return _FITTERS[method](y, p)


def choose_method(labels: np.ndarray, probabilities: np.ndarray, folds: int = 5, seed: int = 0) -> Method:
    """The method with the lowest out-of-fold Brier score on these rows."""
    return min(METHODS, key=lambda m: out_of_fold_brier(labels, probabilities, m, folds, seed))


def out_of_fold_brier(labels: np.ndarray, probabilities: np.ndarray, method: Method, folds: int = 5,
                      seed: int = 0) -> float:
    """The Brier score of ``method`` fitted on k-1 folds and applied to the k-th, over all rows."""
    from sklearn.model_selection import StratifiedKFold  # fitting only: scoring never imports scikit-learn

    folds = max(2, min(folds, int(np.bincount(labels).min())))
    predicted = np.empty(len(labels))
    for fit_rows, held_out in StratifiedKFold(folds, shuffle=True, random_state=seed).split(probabilities, labels):
        calibration = _FITTERS[method](labels[fit_rows], probabilities[fit_rows])
        predicted[held_out] = calibration.apply(probabilities[held_out])
    return float(np.mean((predicted - labels) ** 2))


def _fit_none(labels: np.ndarray, probabilities: np.ndarray) -> Calibration:
    return Calibration()


def _fit_platt(labels: np.ndarray, probabilities: np.ndarray) -> Calibration:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e6, max_iter=1000).fit(_logit(probabilities).reshape(-1, 1), labels)
    return Calibration("platt", slope=float(model.coef_[0, 0]), intercept=float(model.intercept_[0]))


def _fit_isotonic(labels: np.ndarray, probabilities: np.ndarray) -> Calibration:
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probabilities, labels)
    return Calibration("isotonic", knots_x=tuple(map(float, model.X_thresholds_)),
                       knots_y=tuple(map(float, model.y_thresholds_)))


_FITTERS = {"none": _fit_none, "platt": _fit_platt, "isotonic": _fit_isotonic}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|

