"""Recency: days since the last event of each kind, capped at the history and flagged."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature
from churn_spark.labels import days_before_t

FIRST_EVENT_TIME = "first_event_time"  # the column of ``first_event_times`` (and the first_events table)
KINDS = {"view": "page view", "cart": "add-to-cart", "purchase": "purchase",
         "review": "review", "service": "service contact"}


def features(ctx: Context) -> list[Feature]:
    out = []
    for kind, words in KINDS.items():
        article = "an" if words[0] in "aeiou" else "a"
        out.append(Feature(
            f"days_since_last_{kind}", "double", None,
            f"days from the last {words} to T, capped at {ctx.history_days} (none in history)",
            ctx.history_days,
            lambda k=kind: ctx.days_since_latest(f"last_{k}", ctx.within(ctx.history_days)),
            group=f"last_{kind}"))
        out.append(Feature(
            f"{kind}_seen", "int", None,
            f"1 if the user has {article} {words} in the {ctx.history_days} days before T", 0,
            lambda k=kind: F.when(ctx.count_of(k, ctx.history_days) > 0, 1), group=f"last_{kind}"))
    out.append(Feature(
        "days_since_first_event", "double", None,
        "days from the user's first event ever to T, whatever the history window (0: none before T)", 0,
        lambda: days_before_t(F.col(FIRST_EVENT_TIME), F.col("snapshot_date")), stage="profile", group="tenure"))
    return out


def first_event_times(events: DataFrame) -> DataFrame:
    """Per user, the time of their first event in ``events`` (``user_id``, ``first_event_time``).

    Kept as state by ingest (the ``first_events`` table, a MERGE taking the minimum), since the
    feature jobs read only the history window of the events.
    """
    return events.groupBy("user_id").agg(F.min("event_time").alias(FIRST_EVENT_TIME))
