"""Randomised, logged retention actions: every alert's action, its propensity, and its outcome.

Each alert gets one action of ``policy.actions``. A share ``policy.exploration`` of alerted users
(chosen by a hash of seed, user and date, so a re-run assigns the same) gets an action drawn
uniformly from all of them, ``none`` included: the hold-out that measures what no action does. The
rest get the serving policy's action: the promoted learnt policy's (``churn_spark.policy``), else
the rule table's (``alerts.actions``). The alert stores the action, its cost, who chose it, and its
propensity, the probability that the assignment gave this user this action:
``exploration / K + (1 - exploration) x [the action is the serving policy's]`` for K actions.
That is what lets ``churn-spark policy`` judge any other policy from the log (off-policy evaluation).

A user whose earlier assignment's outcome window is still open gets no action and no propensity
(``hold_open_windows``): an action now would change the outcome of the earlier one, so each window
belongs to one action, and such alerts are not in the log.

``outcomes`` joins each assignment whose label window has closed with whether the user made a
purchase in [T, T + ``labels.horizon_days``), labelled exactly as ``labels`` labels, and the
assignment's net reward: what keeping the user is worth (``policy.margin`` x last-90-day spend)
if they were kept, minus the action's cost.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import NO_ACTION, Config, PolicyConfig
from churn_spark.features import KEYS
from churn_spark.generate import uniform
from churn_spark.labels import label_aggregates, snapshot_days
from churn_spark.snapshots import read_daily

EXPLORE = "explore"  # assigned_by of an exploring draw
RULES = "rules"  # assigned_by of the rule table's action
WAITING = "waiting"  # assigned_by of a user whose earlier action's window is still open: no action now


def assign(alerts: DataFrame, serving: Column, served_by: Column, settings: PolicyConfig) -> DataFrame:
    """``alerts`` with each user's ``suggested_action``, ``action_cost``, ``assigned_by`` and
    ``propensity``.

    Parameters
    ----------
    alerts
        One row per alerted user (``user_id``, ``snapshot_date``).
    serving, served_by
        The serving policy's action for the row, and its name (``rules``, ``policy <version>``).
    settings
        The actions and their costs, the exploration share and the draws' seed.
    """
    actions = list(settings.actions)
    share = settings.exploration
    date = F.col("snapshot_date").cast("string")
    explored = uniform(settings.seed, "explore", "user_id", date) < F.lit(share)
    drawn = F.element_at(F.array(*[F.lit(a) for a in actions]),
                         (uniform(settings.seed, "action", "user_id", date) * len(actions)).cast("int") + 1)
    chosen = F.when(explored, drawn).otherwise(serving)
    costs = F.create_map(*[x for a, c in settings.actions.items() for x in (F.lit(a), F.lit(float(c)))])
    return (alerts.withColumn("_served", serving).withColumn("suggested_action", chosen)
            .withColumn("action_cost", costs[F.col("suggested_action")])
            .withColumn("assigned_by", F.when(explored, F.lit(EXPLORE)).otherwise(served_by))
            .withColumn("propensity", F.lit(share / len(actions))
                        + F.when(F.col("suggested_action") == F.col("_served"), F.lit(1.0 - share)).otherwise(0.0))
            .drop("_served"))


def hold_open_windows(assigned: DataFrame, waiting: DataFrame) -> DataFrame:
    """``assigned`` where each user of ``waiting`` (``user_id``) gets no action and no propensity
    (``assigned_by`` ``waiting``): a user given an action (or the hold-out) at T0 is not acted on
    again before T0 + horizon, so that each outcome window belongs to one action. Such rows are
    not in the log."""
    flagged = assigned.join(waiting.select("user_id", F.lit(True).alias("_waiting")).distinct(), "user_id", "left")
    wait = F.coalesce("_waiting", F.lit(False))
    held = {"suggested_action": F.lit(NO_ACTION), "action_cost": F.lit(0.0), "assigned_by": F.lit(WAITING),
            "propensity": F.lit(None).cast("double")}
    return flagged.select(*[F.when(wait, held[c]).otherwise(F.col(c)).alias(c) if c in held else c
                            for c in assigned.columns])


def waiting(spark: SparkSession, config: Config, as_of: dt.date) -> DataFrame:
    """The users with a logged assignment whose outcome window is open at ``as_of``: at a date in
    (``as_of`` - horizon, ``as_of``)."""
    first = as_of - dt.timedelta(days=config.labels.horizon_days - 1)
    return (_logged(spark, config).where(F.col("snapshot_date").between(first, as_of - dt.timedelta(days=1)))
            .select("user_id"))


def outcomes(spark: SparkSession, config: Config) -> DataFrame:
    """Every logged assignment whose label window [T, T + horizon) the ``user_daily`` rollup has
    closed, with ``retained`` (1: a purchase in the window), ``worth`` (``policy.margin`` x
    ``spend_90d``) and ``reward`` (``retained`` x ``worth`` - ``action_cost``). Empty without any.

    The view of ``churn-spark policy``; ``createOrReplaceTempView("outcomes")`` names it for SQL.
    """
    empty = _logged(spark, config).limit(0)
    if not tables.table_exists(spark, config, "alerts"):
        return _with_outcome(empty.withColumn("label", F.lit(0)), config)
    daily = read_daily(spark, config)
    last_day = daily.agg(F.max("day")).first()[0]
    logged = _logged(spark, config)
    horizon = config.labels.horizon_days
    dates = [r[0] for r in logged.select("snapshot_date").distinct().collect()
             if last_day is not None and r[0] + dt.timedelta(days=horizon - 1) <= last_day]
    if not dates:
        return _with_outcome(empty.withColumn("label", F.lit(0)), config)
    settings = config.labels
    labels = (snapshot_days(daily, dates, settings.lookback_days, horizon).groupBy(*KEYS)
              .agg(*label_aggregates(horizon, settings.lookback_days, settings.eligibility, daily=True))
              .select(*KEYS, "label"))
    # An alerted user with no rollup row in the window made no purchase in it: not kept.
    matured = logged.where(F.col("snapshot_date").isin(dates)).join(labels, list(KEYS), "left")
    return _with_outcome(matured.withColumn("label", F.coalesce("label", F.lit(1))), config)


def _logged(spark: SparkSession, config: Config) -> DataFrame:
    """The alerts that carry an assignment (alerts written before actions were randomised do not)."""
    tables.add_columns(spark, config, "alerts", ASSIGNMENT_COLUMNS)
    if not tables.table_exists(spark, config, "alerts"):
        return spark.createDataFrame([], tables.SPECS["alerts"].schema)
    return tables.read_table(spark, config, "alerts").where(F.col("propensity").isNotNull())


def _with_outcome(rows: DataFrame, config: Config) -> DataFrame:
    worth = F.lit(config.policy.margin) * F.coalesce("spend_90d", F.lit(0.0))
    return (rows.withColumn("retained", (1 - F.col("label")).cast("int")).drop("label")
            .withColumn("worth", worth)
            .withColumn("reward", F.col("retained") * F.col("worth") - F.col("action_cost")))


ASSIGNMENT_COLUMNS = ("action_cost", "assigned_by", "propensity")  # added to alerts after its first version
