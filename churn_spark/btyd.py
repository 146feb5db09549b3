"""Buy-till-you-die: the BG/NBD model of repeat buying (Fader, Hardie & Lee, 2005).

While alive, a customer buys as a Poisson process of rate ``lambda``; after each purchase they
drop out for good with probability ``p``. Across customers ``lambda ~ Gamma(r, alpha)`` and
``p ~ Beta(a, b)``. A customer at snapshot T is summarised by three numbers from their purchase
days in the history window before T (the catalogue's ``repeat_purchase_days``,
``purchase_span_days`` and ``first_purchase_age_days``): ``x``, the purchase days after the
first; ``t_x``, the days from the first to the last; ``age``, the days from the first to T.
Every time here is in days.

The four parameters are fitted by maximum likelihood: the closed form of the paper's equation
(6), maximised over their logarithms by scipy's L-BFGS-B within ``LOG_BOUNDS``. When customers
show no sign of dropping out, the maximum lies on the boundary ``p -> 0`` (``a -> 0`` or
``b -> inf``), where an unbounded fitter (lifetimes') wanders off and fails to converge; the
bounds stop the search there, the fit says ``no_dropout`` (a mean dropout probability
``a / (a + b)`` below ``NO_DROPOUT``), and the predictions are those of the limit (a customer
is alive with probability 1: the NBD model).

Predictions, per customer, for a horizon of ``h`` days after T:

- ``p_alive``: equation (11);
- ``expected_purchases``: equation (10), with its Gauss hypergeometric function written by
  Euler's transformation, ``(1-z)^(r+x) 2F1(r+x, b+x; c; z) = (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z)``,
  whose parameters do not grow with ``x`` (the direct form overflows for frequent buyers);
- ``p_no_purchase``: the churn label's event, no purchase in ``[T, T+h)``: dead, or alive and
  no Poisson event, ``1 - P(alive) + P(alive) * ((alpha+age) / (alpha+age+h))^(r+x)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, special

SUMMARIES = ("repeat_purchase_days", "purchase_span_days", "first_purchase_age_days")  # x, t_x, age
LOG_BOUNDS = (-10.0, 10.0)  # on log r, log alpha, log a, log b
NO_DROPOUT = 1e-3  # a fitted mean dropout probability below this: the no-dropout boundary
MIN_CUSTOMERS = 10  # fewer customers with a purchase cannot fit four parameters


@dataclass(frozen=True)
class BGNBD:
    """Fitted BG/NBD parameters (times in days)."""

    r: float
    alpha: float
    a: float
    b: float
    no_dropout: bool = False  # the likelihood's maximum is on the boundary p -> 0 (see the module docstring)

    def p_alive(self, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The probability that each customer is still alive at T (1 for one who never re-bought)."""
        x, t_x, age = _summaries(x, t_x, age)
        repeat = x > 0
        log_odds = (np.log(self.a) - np.log(np.where(repeat, self.b + x - 1, 1.0))
                    + (self.r + x) * (np.log(self.alpha + age) - np.log(self.alpha + t_x)))
        return np.where(repeat, special.expit(-log_odds), 1.0)

    def expected_purchases(self, horizon: float, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The expected number of purchases in the ``horizon`` days from T."""
        x, t_x, age = _summaries(x, t_x, age)
        a = self.a if abs(self.a - 1) > 1e-6 else 1 + 1e-6  # the closed form is 0/0 at a = 1
        c = a + self.b + x - 1
        z = horizon / (self.alpha + age + horizon)
        transformed = (1 - z) ** (a - 1) * special.hyp2f1(a + self.b - 1 - self.r, a - 1, c, z)
        return c / (a - 1) * (1 - transformed) * self.p_alive(x, t_x, age)

    def p_no_purchase(self, horizon: float, x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> np.ndarray:
        """The probability of no purchase in the ``horizon`` days from T: the churn label's event."""
        x, t_x, age = _summaries(x, t_x, age)
        alive = self.p_alive(x, t_x, age)
        quiet_if_alive = ((self.alpha + age) / (self.alpha + age + horizon)) ** (self.r + x)
        return 1 - alive + alive * quiet_if_alive

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, state: dict) -> BGNBD:
        return cls(**state)


def log_likelihood(params: tuple[float, float, float, float], x: np.ndarray, t_x: np.ndarray,
                   age: np.ndarray) -> np.ndarray:
    """Each customer's log-likelihood of their (x, t_x, age) under ``params`` = (r, alpha, a, b)."""
    r, alpha, a, b = params
    x, t_x, age = _summaries(x, t_x, age)
    repeat = x > 0
    common = (special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
              + special.betaln(a, b + x) - special.betaln(a, b))
    still = -(r + x) * np.log(alpha + age)
    dropped = np.where(repeat, np.log(a) - np.log(np.where(repeat, b + x - 1, 1.0))
                       - (r + x) * np.log(alpha + t_x), -np.inf)
    return common + np.logaddexp(still, dropped)


def fit(x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> BGNBD:
    """Maximum-likelihood BG/NBD parameters from customers' summaries; customers with no
    purchase before T (``age`` 0) carry no information and are left out.

    Raises
    ------
    ValueError
        Fewer than ``MIN_CUSTOMERS`` customers with a purchase, or summaries that break
        ``0 <= t_x <= age`` with ``x >= 0``.
    """
    x, t_x, age = _summaries(x, t_x, age)
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > age):
        raise ValueError("bgnbd: summaries must hold x >= 0 and 0 <= t_x <= age")
    bought = age > 0
    if bought.sum() < MIN_CUSTOMERS:
        raise ValueError(f"bgnbd: {int(bought.sum())} customers with a purchase; at least {MIN_CUSTOMERS} "
                         f"are needed to fit")
    x, t_x, age = x[bought], t_x[bought], age[bought]

    def loss(log_params: np.ndarray) -> float:
        return -float(np.mean(log_likelihood(tuple(np.exp(log_params)), x, t_x, age)))

    start = np.array([0.0, np.log(max(float(np.mean(age)), 1.0)), 0.0, 0.0])
    found = optimize.minimize(loss, start, method="L-BFGS-B", bounds=[LOG_BOUNDS] * 4)
    r, alpha, a, b = (float(v) for v in np.exp(found.x))
    return BGNBD(r, alpha, a, b, no_dropout=a / (a + b) < NO_DROPOUT)


def _summaries(x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.asarray(v, dtype="float64") for v in (x, t_x, age))  # type: ignore[return-value]
