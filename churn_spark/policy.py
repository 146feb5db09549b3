"""A retention policy learnt from logged, randomised actions, judged off-policy (``churn-spark policy``).

The log is ``actions.outcomes``: every alert's action, its propensity, and whether the user was
kept. From it:

1. **Uplift.** A win-back model (``RetentionModel``): P(kept | none, features at T), learnt from
   every row, and per action a lift, the probability that the action keeps a user who would be
   lost without it, learnt from that action's rows. (A T-learner, a LightGBM classifier per
   action, lost to the rule table on generated worlds: the hold-out arm is too small to learn
   from; ``bench/RESULTS.md`` compares them.)
2. **The policy.** For each user the action with the highest expected net value,
   P(kept | a) x worth - cost(a), ``none`` included; under ``policy.budget`` (per scoring run) the
   users whose best action gains most over ``none`` are served first (``Policy.choose``).
3. **Off-policy evaluation** of the learnt policy against treat-none, treat-all-high-risk
   (``policy.blanket_action`` to every high-tier alerted user) and the rule table, on the same
   rows: inverse propensity (IPS), self-normalised IPS (SNIPS) and doubly robust (DR) estimates of
   the net value per alerted user, each with a 95% bootstrap interval, and the effective sample
   size of the importance weights. The learnt policy and DR's outcome model are cross-fitted
   (``policy.folds``, by user): each row is judged by models that never saw it.
4. **Promotion.** The policy fitted on every row is saved under ``models/policies/``; it is
   promoted (``models/policy.json``), and alerts then use it, when DR's paired bootstrap interval
   of its gain over the rule table lies above 0. Until then, and whenever it cannot serve, the
   rule table chooses.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy import optimize, special

from churn_spark import actions, storage, tables
from churn_spark.alerts import action_column
from churn_spark.config import NO_ACTION, Config, PolicyConfig
from churn_spark.errors import InputError
from churn_spark.features import KEYS
from churn_spark.score import features_on

log = logging.getLogger(__name__)

PROMOTED = "policy.json"  # under models/: the policy alerts use
CANDIDATES = "policies"  # under models/: every learnt policy, by version
ESTIMATORS = ("ips", "snips", "dr")
BASELINES = ("none", "all_high_risk", "rules")
LEARNT = "learnt"
TRUTH = "truth"  # the estimator name of a policy's true value, where the world is known
_NUMERIC = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


@dataclass
class RetentionModel:
    """P(kept | features, action): a win-back model, one lift model per action over a shared baseline.

    An action can only add a reason to stay: a user kept without it is kept with it, and one who
    would be lost is won back with a probability, the action's *lift*. So

        P(kept | none, x) = p0(x) = sigmoid(w_none . z)
        P(kept | a, x)    = 1 - (1 - p0(x)) (1 - lift_a(x)),   lift_a(x) = sigmoid(w_a . z)

    with ``z`` the features standardised on the training rows (clipped to +-``_CLIP``) and an
    intercept. All weights are fitted at once by maximum likelihood with an L2 penalty
    (``policy.regularisation``) on every weight but the intercepts (scipy's L-BFGS-B). Every row
    informs the baseline, not only the hold-out's (``none`` gets exploration / |actions| of the
    rows: a T-learner's hold-out model has a handful of rows to learn from); each action's rows
    inform its lift. An action logged fewer than ``policy.min_rows`` times gets a lift without
    features (its intercept only); one never logged, no lift at all.
    """

    actions: list[str]
    features: list[str]
    center: list[float]
    scale: list[float]
    weights: dict[str, list[float]]  # per action: the intercept, then one weight per feature (none: p0's)

    @classmethod
    def fit(cls, x: pd.DataFrame, taken: np.ndarray, kept: np.ndarray, actions: Sequence[str],
            min_rows: int, regularisation: float) -> "RetentionModel":
        center = x.mean().fillna(0.0).to_numpy(float)
        scale = x.std().fillna(0.0).to_numpy(float)
        scale[~(scale > 0)] = 1.0
        z = _standardised(x.to_numpy(float), center, scale)
        names = list(actions)
        arm = np.array([names.index(a) for a in taken])
        none = names.index(NO_ACTION)
        counts = np.bincount(arm, minlength=len(names))
        free = np.ones((len(names), z.shape[1]), dtype=bool)  # which weights the fit may move
        start = np.zeros((len(names), z.shape[1]))
        for k in range(len(names)):
            if k != none and counts[k] < min_rows:
                free[k, 1:] = False
            if k != none and counts[k] == 0:
                free[k, 0], start[k, 0] = False, _NO_LIFT
        y = kept.astype(float)
        penalty = np.full(z.shape[1], regularisation)
        penalty[0] = 0.0

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w = start.copy()
            w[free] = theta
            base = z @ w[none]  # p0's logit
            lift = np.einsum("ij,ij->i", z, w[arm])  # the taken action's lift logit (none's: unused)
            treated = arm != none
            # log P(lost) = log(1 - p0) + log(1 - lift), the second term only where an action was taken
            log_lost = -np.logaddexp(0.0, base) - np.where(treated, np.logaddexp(0.0, lift), 0.0)
            lost = np.exp(log_lost)
            log_kept = np.log(-np.expm1(np.minimum(log_lost, -1e-12)))
            # d loglik / d logit = r x sigmoid(logit), for the baseline's and the taken lift's logit
            r = np.where(y == 1, lost / np.maximum(1.0 - lost, 1e-12), -1.0)
            grad = np.zeros_like(w)
            grad[none] = z.T @ (r * special.expit(base))
            for k in np.flatnonzero(counts):
                if k != none:
                    mine = arm == k
                    grad[k] = z[mine].T @ (r[mine] * special.expit(lift[mine]))
            value = -(y * log_kept + (1 - y) * log_lost).sum() + 0.5 * (penalty * w ** 2).sum()
            return float(value), (-grad + penalty * w)[free]

        fitted = optimize.minimize(loss, start[free], jac=True, method="L-BFGS-B", options={"maxiter": 1000})
        w = start.copy()
        w[free] = fitted.x
        return cls(names, list(x.columns), center.tolist(), scale.tolist(),
                   {a: w[k].tolist() for k, a in enumerate(names)})

    @classmethod
    def constant(cls, actions: Sequence[str], kept: dict[str, float], features: Sequence[str] = ()) -> "RetentionModel":
        """The model of fixed probabilities ``kept`` (per action, none's the lowest) whatever the
        ``features`` (read, with weight 0)."""
        base = kept[NO_ACTION]
        logits = {a: _logit(base if a == NO_ACTION else (kept[a] - base) / (1.0 - base)) for a in actions}
        n = len(features)
        return cls(list(actions), list(features), [0.0] * n, [1.0] * n,
                   {a: [logits[a]] + [0.0] * n for a in actions})

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """P(kept) under each action: one row per user, one column per action (``actions``' order)."""
        z = _standardised(x[self.features].to_numpy(float).reshape(len(x), len(self.features)),
                          np.array(self.center), np.array(self.scale))
        base = special.expit(z @ np.array(self.weights[NO_ACTION]))
        out = np.empty((len(x), len(self.actions)))
        for k, action in enumerate(self.actions):
            lift = 0.0 if action == NO_ACTION else special.expit(z @ np.array(self.weights[action]))
            out[:, k] = 1.0 - (1.0 - base) * (1.0 - lift)
        return out


_CLIP = 5.0  # standardised features are clipped to this many standard deviations
_NO_LIFT = -30.0  # the lift logit of an action never logged: sigmoid(-30) ~ 1e-13


def _standardised(values: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """An intercept column, then (values - center) / scale clipped to +-_CLIP (missing: 0)."""
    z = np.nan_to_num(np.clip((values - center) / scale, -_CLIP, _CLIP))
    return np.hstack([np.ones((len(values), 1)), z])


def _logit(p: float) -> float:
    p = min(max(p, 1e-13), 1 - 1e-13)
    return float(np.log(p / (1 - p)))


@dataclass
class Policy:
    """A learnt policy: the retention model, the actions' costs, the worth of a kept user, the budget."""

    version: str
    model: RetentionModel
    costs: dict[str, float]
    margin: float
    budget: float | None
    trained_on: dict[str, Any] = field(default_factory=dict)  # rows, dates: what it learnt from

    def net_values(self, x: pd.DataFrame, spend: np.ndarray) -> np.ndarray:
        """Expected net value of each action for each user: P(kept | a) x margin x spend - cost(a)."""
        return net_values(self.model.predict(x), spend * self.margin, self.model.actions, self.costs)

    def choose(self, x: pd.DataFrame, spend: np.ndarray, dates: np.ndarray) -> np.ndarray:
        """Each user's action (see ``choose``)."""
        return choose(self.net_values(x, spend), self.model.actions, self.costs, dates, self.budget)

    def to_json(self) -> str:
        m = self.model
        return json.dumps({"version": self.version, "actions": m.actions, "features": m.features, "center": m.center,
                           "scale": m.scale, "weights": m.weights, "costs": self.costs, "margin": self.margin,
                           "budget": self.budget, "trained_on": self.trained_on})

    @classmethod
    def from_json(cls, text: str) -> "Policy":
        d = json.loads(text)
        if "weights" not in d:
            raise ValueError(f"policy {d.get('version')} is of an older format (a T-learner's, no win-back weights)")
        model = RetentionModel(d["actions"], d["features"], d["center"], d["scale"], d["weights"])
        return cls(d["version"], model, d["costs"], d["margin"], d["budget"], d.get("trained_on", {}))


def net_values(kept: np.ndarray, worth: np.ndarray, actions: Sequence[str], costs: dict[str, float]) -> np.ndarray:
    """P(kept | a) x worth - cost(a): users x actions."""
    return kept * worth[:, None] - np.array([costs[a] for a in actions])[None, :]


def choose(net: np.ndarray, actions: Sequence[str], costs: dict[str, float], dates: np.ndarray,
           budget: float | None) -> np.ndarray:
    """The action of highest net value for each user (``none`` where nothing beats it). Under a
    budget, per date, users are served in order of their best action's gain over ``none``, each whose
    action still fits in what is left of the budget; the rest get ``none``."""
    none = list(actions).index(NO_ACTION)
    best = net.argmax(axis=1)
    chosen = np.array(actions, dtype=object)[best]
    if budget is None:
        return chosen
    gain = net[np.arange(len(net)), best] - net[:, none]
    cost = np.array([costs[a] for a in chosen])
    for day in np.unique(dates):
        rows = np.flatnonzero(dates == day)
        spent = 0.0
        for row in rows[np.argsort(-gain[rows], kind="stable")]:
            if spent + cost[row] <= budget:
                spent += cost[row]
            else:
                chosen[row] = NO_ACTION
    return chosen


# --- off-policy evaluation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One estimator's net value per alerted user of one policy."""

    policy: str
    estimator: str
    value: float
    low: float
    high: float
    ess: float
    rows: int
    action: str = "all"  # "all": the whole policy; an action: the part its users contribute
    users: int = 0  # rows the policy gives ``action`` (all rows for "all")


@dataclass(frozen=True)
class Logged:
    """The log as arrays: each row's action, its propensity, its net reward, and the cross-fitted
    outcome model's expected net value of every action (``q``: rows x actions)."""

    actions: list[str]
    taken: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    q: np.ndarray

    def terms(self, target: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per estimator, the per-row numerators and weights whose ratio of sums is the estimate:
        IPS w r / 1, SNIPS w r / w, DR (q(x, π) + w (r - q(x, a))) / 1."""
        w = (self.taken == target) / self.propensity
        index = {a: k for k, a in enumerate(self.actions)}
        rows = np.arange(len(target))
        q_target = self.q[rows, [index[a] for a in target]]
        q_taken = self.q[rows, [index[a] for a in self.taken]]
        ones = np.ones(len(target))
        return {"ips": (w * self.reward, ones), "snips": (w * self.reward, w),
                "dr": (q_target + w * (self.reward - q_taken), ones)}


def evaluate(logged: Logged, target: np.ndarray, name: str, resamples: np.ndarray) -> list[Estimate]:
    """IPS, SNIPS and DR estimates of policy ``target`` (an action per row), with 95% bootstrap
    intervals over ``resamples`` (resamples x rows of row indices), and DR's split by action."""
    w = (logged.taken == target) / logged.propensity
    ess = float(w.sum() ** 2 / (w ** 2).sum()) if (w > 0).any() else 0.0
    n = len(target)
    out = []
    for estimator, (top, bottom) in logged.terms(target).items():
        out.append(Estimate(name, estimator, *_ratio(top, bottom, resamples), ess, n, users=n))
    top, bottom = logged.terms(target)["dr"]
    for action in logged.actions:
        mine = target == action
        if mine.any():
            out.append(Estimate(name, "dr", *_ratio(top * mine, bottom, resamples), ess, n, action, int(mine.sum())))
    return out


def _ratio(top: np.ndarray, bottom: np.ndarray, resamples: np.ndarray) -> tuple[float, float, float]:
    """sum(top) / sum(bottom) and its 95% percentile bootstrap interval (a resample with no weight
    at all leaves the interval)."""
    value = float(top.sum() / bottom.sum()) if bottom.sum() > 0 else float("nan")
    tops, bottoms = top[resamples].sum(axis=1), bottom[resamples].sum(axis=1)
    kept = bottoms > 0
    boot = tops[kept] / bottoms[kept]
    if not len(boot):
        return value, float("nan"), float("nan")
    low, high = np.percentile(boot, [2.5, 97.5])
    return value, float(low), float(high)


def gain_interval(logged: Logged, target: np.ndarray, other: np.ndarray, resamples: np.ndarray) -> tuple[float, ...]:
    """DR's estimate of ``target``'s gain over ``other`` per alerted user, with its paired 95% interval."""
    difference = logged.terms(target)["dr"][0] - logged.terms(other)["dr"][0]
    return _ratio(difference, np.ones(len(difference)), resamples)


def cross_fit(x: pd.DataFrame, rows: pd.DataFrame, settings: PolicyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted expected net values (rows x actions) and the learnt policy's actions: each
    fold (by user) predicted by a model fitted on the other folds."""
    names = list(settings.actions)
    folds = np.array([zlib.crc32(u.encode()) % settings.folds for u in rows["user_id"]])
    kept = np.empty((len(rows), len(names)))
    for fold in range(settings.folds):
        mine = folds == fold
        if not mine.any():
            continue
        model = RetentionModel.fit(x.loc[~mine], rows["suggested_action"].to_numpy()[~mine],
                                   rows["retained"].to_numpy()[~mine], names, settings.min_rows,
                                   settings.regularisation)
        kept[mine] = model.predict(x.loc[mine])
    net = net_values(kept, rows["worth"].to_numpy(float), names, settings.actions)
    learnt = choose(net, names, settings.actions, rows["snapshot_date"].to_numpy(), settings.budget)
    return net, learnt


# --- the job ----------------------------------------------------------------------------------


@dataclass
class PolicyRun:
    """What ``run_policy`` learnt and measured."""

    through: dt.date
    version: str
    rows: int
    estimates: list[Estimate]
    gain: tuple[float, float, float]  # DR: the learnt policy's gain over the rule table, its interval
    promoted: bool
    chosen: pd.DataFrame  # the log's rows with each judged policy's action (for a truth, where one is known)

    def lines(self) -> list[str]:
        out = [f"policy {self.version}: learnt from {self.rows} matured assignments through {self.through}; "
               f"net value per alerted user (95% interval), effective sample size:"]
        for e in self.estimates:
            if e.action == "all" and e.estimator == TRUTH:
                out.append(f"  {e.policy:<14} {e.estimator:<8} {e.value:9.3f}")
            elif e.action == "all":
                out.append(f"  {e.policy:<14} {e.estimator:<8} {e.value:9.3f} [{e.low:9.3f}, {e.high:9.3f}]  "
                           f"ESS {e.ess:8.1f}")
        value, low, high = self.gain
        verdict = "promoted: alerts use it" if self.promoted else "not promoted: the rule table keeps choosing"
        out.append(f"learnt - rules (DR): {value:.3f} [{low:.3f}, {high:.3f}]; {verdict}")
        return out


def run_policy(spark: SparkSession, config: Config,
               truth: Callable[[pd.DataFrame, list[str]], dict[str, float]] | None = None) -> PolicyRun:
    """Learn a policy from every matured assignment, judge it and the baselines off-policy, write
    ``policy_evaluation`` for the last matured date, save the policy, and promote it if it beats
    the rule table (see the module docstring).

    ``truth``, where the world is known (generated data: ``simulate.policy_truth``), gives each
    judged policy's true net value on the same rows (from ``PolicyRun.chosen``), written beside
    the estimates as estimator ``truth``.

    Raises
    ------
    InputError
        Before anything is written: no matured assignment to learn from.
    """
    settings = config.policy
    rows, x = logged_rows(spark, config)
    if rows.empty:
        raise InputError(f"{config.table('alerts')}: no assignment whose label window has closed; "
                         "score, alert and wait for the horizon (or run churn-spark monitor to see what matured)")
    names = list(settings.actions)
    unknown = sorted(set(rows["suggested_action"]) - set(names))
    if unknown:
        raise InputError(f"{config.table('alerts')}: logged action {unknown[0]!r} is not one of policy.actions "
                         f"({', '.join(names)}); put it back in the configuration to learn from its rows")
    net, learnt = cross_fit(x, rows, settings)
    logged = Logged(names, rows["suggested_action"].to_numpy(), rows["propensity"].to_numpy(float),
                    rows["reward"].to_numpy(float), net)
    targets = {"none": np.full(len(rows), NO_ACTION, dtype=object),
               "all_high_risk": np.where(rows["risk_tier"] == "high", settings.blanket_action, NO_ACTION),
               "rules": rows["rule_action"].to_numpy(), LEARNT: learnt}
    resamples = np.random.default_rng(settings.seed).integers(0, len(rows), (settings.bootstrap, len(rows)))
    estimates = [e for name, target in targets.items() for e in evaluate(logged, target, name, resamples)]
    estimates.append(Estimate("logged", "observed", *_ratio(logged.reward, np.ones(len(rows)), resamples),
                              float(len(rows)), len(rows), users=len(rows)))
    gain = gain_interval(logged, learnt, targets["rules"], resamples)
    through = max(rows["snapshot_date"])
    version = f"{through.isoformat()}-{len(rows)}"
    policy = Policy(version, RetentionModel.fit(x, rows["suggested_action"].to_numpy(), rows["retained"].to_numpy(),
                                                names, settings.min_rows, settings.regularisation),
                    dict(settings.actions), settings.margin, settings.budget,
                    {"rows": len(rows), "dates": sorted(d.isoformat() for d in set(rows["snapshot_date"]))})
    chosen = rows[[*KEYS, "propensity", "worth"]].assign(logged=rows["suggested_action"], **targets)
    if truth is not None:
        known = truth(chosen, [*targets, "logged"])
        estimates += [Estimate(name, TRUTH, value, float("nan"), float("nan"), float("nan"), len(rows),
                               users=len(rows)) for name, value in known.items()]
    _write_evaluation(spark, config, through, version, estimates)
    save(config, policy)
    promoted = gain[1] > 0
    if promoted:
        promote(config, policy)
    run = PolicyRun(through, version, len(rows), estimates, gain, promoted, chosen)
    for line in run.lines():
        log.info(line)
    return run


def logged_rows(spark: SparkSession, config: Config) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The matured assignments (``actions.outcomes``) with the rule table's action, and the
    uplift model's inputs for them: the numeric features at T and the churn probability."""
    outcomes = actions.outcomes(spark, config).withColumn(
        "rule_action", action_column(config.alerts.actions, config.alerts.default_action))
    dates = sorted(r[0] for r in outcomes.select("snapshot_date").distinct().collect())
    if not dates:
        return pd.DataFrame(), pd.DataFrame()
    features = _features(spark, config, dates)
    inputs = ["churn_probability", *[f.name for f in features.schema.fields
                                     if isinstance(f.dataType, _NUMERIC) and f.name not in (*KEYS, "spend_90d")]]
    joined = (outcomes.join(features.drop("spend_90d", "churn_probability"), list(KEYS), "left")
              .orderBy(*KEYS).toPandas())
    return joined, joined[inputs].astype(float)


def _features(spark: SparkSession, config: Config, dates: Sequence[dt.date]) -> DataFrame:
    """The features at each of ``dates`` (stored, else computed from the rollup), one frame."""
    frames = [features_on(spark, config, day)[0] for day in dates]
    return functools.reduce(DataFrame.unionByName, frames)


def _write_evaluation(spark: SparkSession, config: Config, through: dt.date, version: str,
                      estimates: list[Estimate]) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    frame = spark.createDataFrame(
        [(through, version, e.policy, e.estimator, e.action, e.users, _finite(e.value), _finite(e.low),
          _finite(e.high), _finite(e.ess), e.rows, now) for e in estimates], tables.SPECS["policy_evaluation"].schema)
    tables.replace_dates(frame, config, "policy_evaluation", [through])


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)


# --- storage and serving --------------------------------------------------------------------------


def save(config: Config, policy: Policy) -> str:
    """Write ``policy`` under ``models/policies/<version>.json`` (whole or not at all); its location."""
    folder = storage.join(config.location("models"), CANDIDATES)
    storage.makedirs(folder, config)
    where = storage.join(folder, f"{policy.version}.json")
    storage.write_atomically(where, policy.to_json(), config)
    return where


def promote(config: Config, policy: Policy) -> None:
    """Make ``policy`` the one alerts use."""
    storage.makedirs(config.location("models"), config)
    storage.write_atomically(storage.join(config.location("models"), PROMOTED), policy.to_json(), config)


def promoted(config: Config) -> Policy | None:
    """The promoted policy, or None (the rule table chooses)."""
    where = storage.join(config.location("models"), PROMOTED)
    if not storage.exists(where, config):
        return None
    try:
        return Policy.from_json(storage.read_text(where, config))
    except ValueError as e:
        log.warning("%s: %s; the rule table chooses until churn-spark policy promotes a new one", where, e)
        return None


def assign_actions(spark: SparkSession, config: Config, alerts: DataFrame, as_of: dt.date) -> DataFrame:
    """``alerts`` (with the rule table's ``suggested_action``) with each user's assigned action
    (``actions.assign``), served by the promoted policy, else by the rule table; users whose
    earlier action's window is open get none (``actions.hold_open_windows``)."""
    return actions.hold_open_windows(_assign(spark, config, alerts, as_of), actions.waiting(spark, config, as_of))


def _assign(spark: SparkSession, config: Config, alerts: DataFrame, as_of: dt.date) -> DataFrame:
    rules = actions.assign(alerts, F.col("suggested_action"), F.lit(actions.RULES), config.policy)
    policy = promoted(config)
    if policy is None:
        return rules
    features, where = features_on(spark, config, as_of)
    missing = [name for name in policy.model.features if name not in (*features.columns, "churn_probability")]
    unknown = [a for a in policy.model.actions if a not in config.policy.actions]
    if missing or unknown:
        why = f"missing feature(s) {', '.join(missing)}" if missing else f"unknown action(s) {', '.join(unknown)}"
        log.warning("policy %s cannot serve %s (%s); the rule table chooses", policy.version, where, why)
        return rules
    inputs = (alerts.select(*KEYS, "churn_probability", "spend_90d")
              .join(features.drop("spend_90d", "churn_probability"), list(KEYS), "left").toPandas())
    if inputs.empty:
        return rules
    chosen = policy.choose(inputs[policy.model.features].astype(float),
                           inputs["spend_90d"].fillna(0.0).to_numpy(float), inputs["snapshot_date"].to_numpy())
    served = spark.createDataFrame(pd.DataFrame({"user_id": inputs["user_id"], "_policy": chosen.astype(str)}))
    with_policy = alerts.join(served, "user_id", "left")
    return actions.assign(with_policy, F.coalesce("_policy", "suggested_action"),
                          F.lit(f"policy {policy.version}"), config.policy).drop("_policy")
