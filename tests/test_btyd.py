"""The BG/NBD model: hand values of its closed forms, and a fit that recovers the parameters
of customers simulated from the model itself."""

from __future__ import annotations

import numpy as np
import pytest

from churn_spark.btyd import BGNBD, fit, log_likelihood

HAND = BGNBD(r=1.0, alpha=1.0, a=1.0, b=2.0)


def simulate(n: int, r: float, alpha: float, a: float, b: float, age: float,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, t_x, age) of ``n`` customers drawn from BG/NBD, each first buying ``age`` days before T."""
    rng = np.random.default_rng(seed)
    rates, dropouts = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, t_x = np.zeros(n), np.zeros(n)
    for i in range(n):
        t = rng.exponential(1 / rates[i])
        while t <= age:
            x[i], t_x[i] = x[i] + 1, t
            if rng.random() < dropouts[i]:
                break
            t += rng.exponential(1 / rates[i])
    return x, t_x, np.full(n, age)


def test_closed_forms_on_hand_values() -> None:
    # x = 1, t_x = 1, age = 3: odds of having dropped = a/(b+x-1) * ((alpha+age)/(alpha+t_x))^(r+x) = 1/2 * 2^2
    assert HAND.p_alive([1], [1], [3]) == pytest.approx([1 / 3])
    assert HAND.p_alive([0], [0], [3]) == pytest.approx([1.0])  # dropout happens only after a repeat purchase
    # no purchase in 4 days: dead (2/3), or alive and no Poisson event ((1+3)/(1+3+4))^(1+1) = 1/4
    assert HAND.p_no_purchase(4, [1], [1], [3]) == pytest.approx([2 / 3 + 1 / 3 * 1 / 4])
    # x = 0: every term but r * log(alpha / (alpha + age)) cancels
    assert log_likelihood((1.0, 1.0, 1.0, 2.0), np.array([0]), np.array([0]), np.array([3])) == pytest.approx(
        [np.log(1 / 4)])


def test_expected_purchases_start_at_the_posterior_rate_of_the_living_and_grow() -> None:
    model = BGNBD(r=0.5, alpha=10.0, a=0.8, b=2.5)
    x, t_x, age = np.array([0, 3, 50]), np.array([0, 100, 170]), np.array([180, 180, 180])
    slope = model.expected_purchases(1e-4, x, t_x, age) / 1e-4
    assert slope == pytest.approx(model.p_alive(x, t_x, age) * (model.r + x) / (model.alpha + age), rel=1e-3)
    month, quarter = model.expected_purchases(30, x, t_x, age), model.expected_purchases(90, x, t_x, age)
    assert np.all(np.isfinite(quarter)) and np.all(quarter > month) and np.all(month > 0)


def test_fit_recovers_the_parameters_customers_were_drawn_from() -> None:
    fitted = fit(*simulate(4000, r=0.5, alpha=10.0, a=0.8, b=2.5, age=180))
    assert (fitted.r, fitted.alpha, fitted.a, fitted.b) == pytest.approx((0.5, 10.0, 0.8, 2.5), rel=0.2)
    assert not fitted.no_dropout


def test_customers_who_never_drop_out_fit_on_the_boundary() -> None:
    rng = np.random.default_rng(1)
    x = rng.poisson(rng.gamma(1.0, 1 / 20, 3000) * 180).astype(float)
    t_x = np.array([rng.uniform(0, 180, int(k)).max() if k else 0.0 for k in x])
    fitted = fit(x, t_x, np.full(3000, 180.0))
    assert fitted.no_dropout
    assert (fitted.r, fitted.alpha) == pytest.approx((1.0, 20.0), rel=0.2)
    assert fitted.p_alive([3], [10], [180]) == pytest.approx([1.0], abs=1e-2)
    assert np.isfinite(fitted.expected_purchases(90, [3], [10], [180])).all()


def test_bad_summaries_are_refused() -> None:
    with pytest.raises(ValueError, match="t_x <= age"):
        fit(np.array([1.0] * 20), np.array([5.0] * 20), np.array([3.0] * 20))
    with pytest.raises(ValueError, match="customers with a purchase"):
        fit(np.zeros(30), np.zeros(30), np.zeros(30))
