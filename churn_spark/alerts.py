"""Alerts for the operations team: users newly at risk, why, and what to do about it.

A user is alerted at T when they are in the high tier now and were not in the previous scoring
run (or were not scored then), or when, still in the model's population (not ``lapsed``), their
probability rose by more than ``alerts.probability_rise`` since that run. Each alert carries the
user's reasons and the rule table's action: the first rule in ``alerts.actions`` whose feature
patterns match one of the user's reason features. The action the user gets is then assigned, with
its propensity, by the serving policy with exploration (``churn_spark.actions``). ``run_alerts``
writes the ``alerts`` partition of T, the CSV and JSON-lines exports (staged and swapped in whole:
``churn_spark.exports``), and the run's summary (``score_runs``, marked complete only once all of
them are written: ``churn_spark.runs``).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import exports, runs, tables
from churn_spark.actions import ASSIGNMENT_COLUMNS
from churn_spark.config import ActionRule, AlertsConfig, Config
from churn_spark.errors import InputError
from churn_spark.score import TIERS

log = logging.getLogger(__name__)

BUILT_COLUMNS = ("user_id", "snapshot_date", "churn_probability", "previous_probability", "risk_tier",
                 "previous_tier", "alert_reason", "top_reasons", "reason_features", "suggested_action",
                 "spend_90d", "model_version", "scored_at")
ALERT_COLUMNS = (*BUILT_COLUMNS, *ASSIGNMENT_COLUMNS)


def build_alerts(current: DataFrame, previous: DataFrame | None, settings: AlertsConfig) -> DataFrame:
    """The alerts of one scoring run, against the previous run (None: there was none), each with
    the rule table's ``suggested_action`` (``run_alerts`` then assigns the action: ``churn_spark.actions``).

    Parameters
    ----------
    current, previous
        Rows of ``churn_scores`` for one snapshot date each.
    settings
        The rise that alerts on its own, and the action rules.
    """
    before = (previous if previous is not None else current.limit(0)).select(
        "user_id", F.col("churn_probability").alias("previous_probability"),
        F.col("risk_tier").alias("previous_tier"))
    joined = current.join(before, "user_id", "left")
    newly_high = (F.col("risk_tier") == "high") & (F.col("previous_tier").isNull() | (F.col("previous_tier") != "high"))
    rose = ((F.col("risk_tier") != "lapsed")
            & ((F.col("churn_probability") - F.col("previous_probability")) > F.lit(settings.probability_rise)))
    reason = F.when(newly_high, "new_high_tier").when(rose, "probability_rise")
    return (joined.withColumn("alert_reason", reason).where(F.col("alert_reason").isNotNull())
            .withColumn("suggested_action", action_column(settings.actions, settings.default_action))
            .select(*BUILT_COLUMNS))


def action_column(rules: list[ActionRule], default: str) -> Column:
    """The first rule matching any of ``reason_features`` (glob patterns), else ``default``."""
    action = F.lit(default)
    for rule in reversed(rules):
        patterns = [fnmatch.translate(p) for p in rule.features]
        matches = F.exists("reason_features", _matcher(patterns))
        action = F.when(matches, F.lit(rule.action)).otherwise(action)
    return action


def _matcher(patterns: list[str]) -> Callable[[Column], Column]:
    """A one-argument lambda for ``F.exists``: the name matches one of the regular expressions."""
    return lambda name: reduce(lambda a, b: a | b, [name.rlike(p) for p in patterns])


def read_alerts(spark: SparkSession, config: Config, as_of: dt.date) -> DataFrame:
    """The alerts of the scoring run at ``as_of``, highest probability first."""
    return (tables.read_table(spark, config, "alerts").where(F.col("snapshot_date") == F.lit(as_of))
            .orderBy(F.desc("churn_probability"), "user_id"))


def reason_counts(alerts: DataFrame) -> DataFrame:
    """How often each feature is among the alerted users' reasons, most frequent first."""
    return (alerts.select(F.explode("reason_features").alias("feature")).groupBy("feature")
            .agg(F.count(F.lit(1)).alias("alerts")).orderBy(F.desc("alerts"), "feature"))


def action_counts(alerts: DataFrame) -> DataFrame:
    """Alerts per suggested action, most frequent first."""
    return (alerts.groupBy("suggested_action").agg(F.count(F.lit(1)).alias("alerts"))
            .orderBy(F.desc("alerts"), "suggested_action"))


def previous_run(scores: DataFrame, as_of: dt.date) -> DataFrame | None:
    """The rows of the latest scoring run before ``as_of`` (by snapshot date), or None."""
    before = _previous(scores, as_of)
    return None if before is None else scores.where(F.col("snapshot_date") == F.lit(before[0]))


def _previous(scores: DataFrame, as_of: dt.date) -> tuple[dt.date, dt.datetime] | None:
    """The snapshot date of the latest scoring run before ``as_of`` and when it was scored."""
    row = (scores.where(F.col("snapshot_date") < F.lit(as_of)).groupBy("snapshot_date")
           .agg(F.max("scored_at").alias("scored_at")).orderBy(F.desc("snapshot_date")).first())
    return None if row is None else (row["snapshot_date"], row["scored_at"])


def export_view(alerts: DataFrame, salt: str | None) -> DataFrame:
    """Alerts as the operations team receives them; user ids as sha256(salt + id) given a salt."""
    user = F.sha2(F.concat(F.lit(salt), F.col("user_id")), 256) if salt is not None else F.col("user_id")
    return alerts.select(user.alias("user_id"), *[c for c in ALERT_COLUMNS if c != "user_id"])


@dataclass(frozen=True)
class Summary:
    """One scoring run in numbers, as printed and stored in ``score_runs``."""

    snapshot_date: dt.date
    model_version: str
    users_scored: int
    tiers: dict[str, int]
    new_alerts: int
    revenue_at_risk: float
    exports: str
    warnings: tuple[str, ...] = ()  # incomplete runs, exports left with raw user ids

    def lines(self) -> list[str]:
        tiers = ", ".join(f"{tier} {self.tiers.get(tier, 0)}" for tier in TIERS)
        return [f"scored {self.users_scored} users at {self.snapshot_date} with model version {self.model_version}",
                f"risk tiers: {tiers}",
                f"new alerts: {self.new_alerts} (exported to {self.exports})",
                f"revenue at risk (last-90-day spend of high-tier users): {self.revenue_at_risk:,.2f}",
                *(f"warning: {w}" for w in self.warnings)]


def run_alerts(spark: SparkSession, config: Config, as_of: dt.date) -> Summary:
    """Alerts for the scoring run of ``as_of``: table partition, exports, summary.

    The run's ``score_runs`` row says ``incomplete`` until the alerts and both exports are
    written; the summary's warnings list every other date that is not complete.

    Raises
    ------
    InputError
        Before anything is written: no scoring run at ``as_of``, or pseudonymised exports asked
        for without the salt in the environment.
    """
    from churn_spark.policy import assign_actions  # the policy module reads this one's rule table

    salt = _salt(config.alerts)
    if not tables.table_exists(spark, config, "churn_scores"):
        raise InputError(f"{config.table('churn_scores')}: no scores; run churn-spark score first")
    scores = tables.read_table(spark, config, "churn_scores")
    current = scores.where(F.col("snapshot_date") == F.lit(as_of))
    counts = {row["risk_tier"]: (row["users"], row["revenue"], row["version"], row["scored_at"]) for row in current
              .groupBy("risk_tier").agg(F.count(F.lit(1)).alias("users"), F.sum("spend_90d").alias("revenue"),
                                        F.max("model_version").alias("version"), F.max("scored_at").alias("scored_at"))
              .collect()}
    if not counts:
        raise InputError(f"{config.table('churn_scores')}: no scoring run at {as_of}; run churn-spark score first")
    before = _previous(scores, as_of)
    run = {"snapshot_date": as_of, "model_version": next(iter(counts.values()))[2],
           "users_scored": sum(c[0] for c in counts.values()), **{tier: counts.get(tier, (0,))[0] for tier in TIERS},
           "revenue_at_risk": float(counts.get("high", (0, 0.0))[1] or 0.0),
           "scored_at": max(c[3] for c in counts.values()),
           "previous_snapshot": before[0] if before else None, "previous_scored_at": before[1] if before else None}
    runs.record(spark, config, {**run, "status": runs.INCOMPLETE})
    previous = scores.where(F.col("snapshot_date") == F.lit(before[0])) if before else None
    alerts = assign_actions(spark, config, build_alerts(current, previous, config.alerts), as_of)
    tables.add_columns(spark, config, "alerts", ASSIGNMENT_COLUMNS)
    written = tables.replace_dates(alerts, config, "alerts", [as_of])
    folder = _export(read_alerts(spark, config, as_of), config, as_of, salt)
    runs.record(spark, config, {**run, "new_alerts": written, "status": runs.COMPLETE})
    warnings = [i.line() for i in runs.incomplete_runs(spark, config)]
    warnings += _raw_exports(config, as_of, salt)
    return Summary(as_of, run["model_version"], run["users_scored"], {tier: c[0] for tier, c in counts.items()},
                   written, run["revenue_at_risk"], folder, tuple(warnings))


def rewrite_exports(spark: SparkSession, config: Config) -> list[str]:
    """Rewrite every date's exports from the ``alerts`` table under the current
    ``alerts.pseudonymise`` (the way back after turning it on); the lines to print.

    Raises
    ------
    InputError
        Before anything is written: pseudonymised exports without the salt, or exports but no
        ``alerts`` table to rewrite them from.
    """
    salt = _salt(config.alerts)
    names = [e.name for e in exports.exported(_root(config), config) if _is_date(e.name)]
    if names and not tables.table_exists(spark, config, "alerts"):
        raise InputError(f"{config.table('alerts')}: no alerts table to rewrite the exports from")
    for name in names:
        day = dt.date.fromisoformat(name)
        _export(read_alerts(spark, config, day), config, day, salt)
    ids = "pseudonymised" if salt is not None else "raw"
    return [f"rewrote the exports of {len(names)} date(s) under {_root(config)} with {ids} user ids"]


def _raw_exports(config: Config, as_of: dt.date, salt: str | None) -> list[str]:
    """A warning when ids are pseudonymised now but other dates' exports were written without."""
    if salt is None:
        return []
    raw = [e.name for e in exports.exported(_root(config), config)
           if e.name != as_of.isoformat() and not e.pseudonymised]
    if not raw:
        return []
    shown = ", ".join(raw[:5]) + (f" and {len(raw) - 5} more" if len(raw) > 5 else "")
    return [f"the exports of {shown} carry raw user ids (written before alerts.pseudonymise was on); "
            f"run churn-spark alerts --rewrite-exports"]


def _is_date(name: str) -> bool:
    try:
        dt.date.fromisoformat(name)
    except ValueError:
        return False
    return True


def _salt(settings: AlertsConfig) -> str | None:
    if not settings.pseudonymise:
        return None
    salt = os.environ.get(settings.salt_env)
    if not salt:
        raise InputError(f"alerts.pseudonymise is on but ${settings.salt_env} is not set; "
                         f"export the salt in the environment (never in a config file)")
    return salt


def _root(config: Config) -> str:
    return f"{config.location('exports')}/alerts"


def _export(alerts: DataFrame, config: Config, as_of: dt.date, salt: str | None) -> str:
    """``exports/alerts/<date>/csv`` and ``/jsonl``: one part file each, swapped in whole."""
    view = export_view(alerts, salt).orderBy(F.desc("churn_probability"), "user_id").coalesce(1)

    def write(folder: str) -> None:
        view.write.json(f"{folder}/jsonl")
        (view.withColumn("top_reasons", F.array_join("top_reasons", "; "))
         .withColumn("reason_features", F.array_join("reason_features", ";"))
         .write.option("header", True).csv(f"{folder}/csv"))

    return exports.swap_in(_root(config), as_of.isoformat(), write, pseudonymised=salt is not None,
                           config=config)
