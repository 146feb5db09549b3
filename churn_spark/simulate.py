"""The generated world's response to retention actions: treatment effects that are known.

``churn_spark.generate`` makes a world without interventions. Here an action taken at T can win
a user back: with a probability, the action's *lift*, the user makes a purchase within the week
from T (``respond`` writes that purchase as events). The lift depends on the user's state at T:

- ``lapse``: how far into their decline a churner is (0 for a loyal user or before the decline,
  1 once silent), from the generator's hidden churn schedule;
- ``bad_experience``: a refund, a service contact or a review of 1-2 stars in the 30 days before T;
- ``abandoned_carts``: more carts than purchases in the 30 days before T (a price-sensitive buyer).

=================  =============================================================================
action             lift (probability of winning the user back)
=================  =============================================================================
``coupon``         0.05 + 0.55 x lapse, a third of that without abandoned carts: it helps
                   price-sensitive lapsing buyers
``service_call``   0.03, and 0.5 more after a bad experience
``winback_email``  0.04: it helps little
any other action   0 (the world does not know it); ``none``: 0
=================  =============================================================================

One uniform draw per (user, T) decides for every action at once, so each user has fixed potential
outcomes: ``retained(a) = max(retained(none), draw < lift(a))``, where ``retained(none)`` is whether
the world without intervention holds a purchase in [T, T + horizon). The true net value of any
policy over the same users is then exact (``true_value``), which is what the off-policy estimates
of ``churn_spark.policy`` are judged against.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark.config import NO_ACTION
from churn_spark.generate import CATEGORIES, GenerateSpec, PRODUCTS, intensity_on, uniform, world

_WITHIN_DAYS = 7  # a won-back user buys within this many days of T (or the horizon, if shorter)
_RECENT_DAYS = 30  # the window of a bad experience and of abandoned carts


def lift(action: str) -> Column:
    """The probability that ``action`` wins a user back, over ``state``'s columns."""
    lapse = F.col("lapse")
    if action == "coupon":
        return (0.05 + 0.55 * lapse) * F.when(F.col("abandoned_carts"), 1.0).otherwise(1 / 3)
    if action == "service_call":
        return 0.03 + 0.5 * F.col("bad_experience").cast("double")
    if action == "winback_email":
        return F.lit(0.04)
    return F.lit(0.0)


def state(spark: SparkSession, spec: GenerateSpec, dates: Sequence[dt.date], horizon_days: int) -> DataFrame:
    """Each user of the world at each T of ``dates``: ``lapse``, ``bad_experience``,
    ``abandoned_carts``, ``retained_without_action`` (a purchase in [T, T + horizon) of the world
    without intervention) and ``draw`` (the uniform draw every action's lift is compared with)."""
    latent, events = world(spark, spec)
    at = spark.createDataFrame([(d,) for d in sorted(set(dates))], "snapshot_date date")
    timed = events.select("user_id", "event_type", "rating",
                          F.to_timestamp("event_time", "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("time"))
    start = F.col("snapshot_date").cast("timestamp")
    before = (timed.time < start) & (timed.time >= start - F.expr(f"INTERVAL {_RECENT_DAYS} DAYS"))
    after = (timed.time >= start) & (timed.time < start + F.expr(f"INTERVAL {horizon_days} DAYS"))
    bad = F.col("event_type").isin("refund", "service") | ((F.col("event_type") == "review") & (F.col("rating") <= 2))
    per_user = (timed.crossJoin(at).where(before | after).groupBy("user_id", "snapshot_date").agg(
        F.max(F.when(before & bad, 1).otherwise(0)).alias("bad"),
        F.sum(F.when(before & (F.col("event_type") == "cart"), 1).otherwise(0)).alias("carts"),
        F.sum(F.when(before & (F.col("event_type") == "purchase"), 1).otherwise(0)).alias("purchases"),
        F.max(F.when(after & (F.col("event_type") == "purchase"), 1).otherwise(0)).alias("retained")))
    day = F.datediff("snapshot_date", F.lit(spec.start)).cast("double")
    return (latent.crossJoin(at).join(per_user, ["user_id", "snapshot_date"], "left").select(
        "user_id", "snapshot_date",
        ((1.0 - intensity_on(day)) / 0.9).alias("lapse"),
        (F.coalesce("bad", F.lit(0)) == 1).alias("bad_experience"),
        (F.coalesce("carts", F.lit(0)) > F.coalesce("purchases", F.lit(0))).alias("abandoned_carts"),
        F.coalesce("retained", F.lit(0)).alias("retained_without_action"),
        uniform(spec.seed, "won back", "user_id", F.col("snapshot_date").cast("string")).alias("draw")))


def potential_outcomes(state_rows: DataFrame, actions: Sequence[str]) -> DataFrame:
    """``state_rows`` with ``retained`` (a map: action -> 0 / 1), what each action would lead to."""
    won = {a: F.when(F.lit(a == NO_ACTION), F.lit(False)).otherwise(F.col("draw") < lift(a)) for a in actions}
    kept = [x for a in actions for x in (F.lit(a), F.greatest("retained_without_action", won[a].cast("int")))]
    return state_rows.withColumn("retained", F.create_map(*kept))


def respond(spark: SparkSession, spec: GenerateSpec, assignments: DataFrame, horizon_days: int) -> DataFrame:
    """The world's response to ``assignments`` (``user_id``, ``snapshot_date``, ``suggested_action``):
    for each user an action wins back, a session of a view, a cart and a purchase of a product of
    their favourite category on a day within the week from T, as landing rows of the contract
    (event ids unique per user and T, so a re-delivery is stored once)."""
    dates = [r[0] for r in assignments.select("snapshot_date").distinct().collect()]
    if not dates:
        return spark.createDataFrame([], _LANDING)
    latent, _ = world(spark, spec)
    rows = (assignments.where(F.col("suggested_action") != NO_ACTION)
            .join(state(spark, spec, dates, horizon_days), ["user_id", "snapshot_date"])
            .join(latent.select("user_id", "fav_category", "channel"), "user_id"))
    won = rows.where(F.col("draw") < _lift_of("suggested_action"))
    key = F.concat_ws("-", "user_id", F.date_format("snapshot_date", "yyyyMMdd"))
    s = spec.seed
    days = F.floor(uniform(s, "won day", key) * min(_WITHIN_DAYS, horizon_days))
    t0 = F.col("snapshot_date").cast("timestamp") + F.make_dt_interval(
        days, F.lit(9) + F.floor(uniform(s, "won hour", key) * 12).cast("int"))
    product = F.col("fav_category") + len(CATEGORIES) * F.floor(
        uniform(s, "won product", key) * (PRODUCTS // len(CATEGORIES))).cast("int")
    price = F.round(F.exp(1.5 + 3.5 * uniform(s, "price", product)), 2)  # the product's price in the world
    steps = F.array(*[F.struct(F.lit(k).alias("k"), F.lit(kind).alias("event_type"))
                      for k, kind in enumerate(("view", "cart", "purchase"))])
    exploded = won.select("*", key.alias("key"), t0.alias("t0"), product.alias("product"),
                          price.alias("base_price"), F.explode(steps).alias("step"))
    paid = F.col("step.event_type") == "purchase"
    return exploded.select(
        F.format_string("%s-won-e%d", "key", F.col("step.k")).alias("event_id"), "user_id",
        F.date_format(F.col("t0") + F.make_dt_interval(secs=F.col("step.k") * 45),
                      "yyyy-MM-dd'T'HH:mm:ss'Z'").alias("event_time"),
        F.col("step.event_type").alias("event_type"), F.format_string("%s-won", "key").alias("session_id"),
        F.format_string("p%05d", "product").alias("product_id"),
        F.element_at(F.array(*[F.lit(c) for c in CATEGORIES]), F.col("fav_category") + 1).alias("category"),
        "channel", F.lit(None).cast("string").alias("review_text"),
        F.when(paid, F.col("base_price")).alias("price"), F.when(paid, F.lit(1)).alias("quantity"),
        F.when(~paid, F.lit(30.0)).alias("dwell_seconds"), F.lit(None).cast("int").alias("rating"))


def _lift_of(column: str) -> Column:
    """``lift`` of the action named in ``column``, row by row."""
    out = F.lit(0.0)
    for action in ("coupon", "service_call", "winback_email"):
        out = F.when(F.col(column) == action, lift(action)).otherwise(out)
    return out


_LANDING = ("event_id string, user_id string, event_time string, event_type string, session_id string, "
            "product_id string, category string, channel string, review_text string, price double, "
            "quantity int, dwell_seconds double, rating int")


def true_value(outcomes: pd.Series, actions: np.ndarray, worth: np.ndarray, costs: dict[str, float]) -> float:
    """A policy's true mean net value over the users of ``outcomes`` (each a map action -> retained,
    from ``potential_outcomes``): what keeping each is worth, where its action keeps it, minus
    the action's cost."""
    kept = np.array([row[a] for row, a in zip(outcomes, actions)], dtype=float)
    cost = np.array([costs[a] for a in actions], dtype=float)
    return float(np.mean(kept * worth - cost))


def policy_truth(spark: SparkSession, spec: GenerateSpec, chosen: pd.DataFrame, policies: Sequence[str],
                 costs: dict[str, float], horizon_days: int) -> dict[str, float]:
    """The true net value per user of each policy in ``policies``, columns of ``chosen`` (an action
    per row of ``user_id``, ``snapshot_date``, ``worth``), over the same rows."""
    keys = spark.createDataFrame(chosen[["user_id", "snapshot_date"]].drop_duplicates(),
                                 "user_id string, snapshot_date date")
    known = (potential_outcomes(state(spark, spec, sorted(set(chosen["snapshot_date"])), horizon_days), list(costs))
             .join(keys, ["user_id", "snapshot_date"]).select("user_id", "snapshot_date", "retained").toPandas())
    rows = chosen.merge(known, on=["user_id", "snapshot_date"], how="left")
    if rows["retained"].isna().any():
        raise ValueError("policy_truth: rows of users the generated world does not hold")
    worth = rows["worth"].to_numpy(float)
    return {name: true_value(rows["retained"], rows[name].to_numpy(), worth, costs) for name in policies}
