"""Data-quality views over the ingested tables, for notebooks and reports (pure transforms)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def quarantine_by_reason(quarantine: DataFrame) -> DataFrame:
    """Rows in quarantine per dataset and reason code (a row with two reasons counts in both)."""
    return (quarantine.select("dataset", F.explode("reasons").alias("reason"))
            .groupBy("dataset", "reason").agg(F.count(F.lit(1)).alias("rows"))
            .orderBy("dataset", F.desc("rows"), "reason"))


def daily_activity(events: DataFrame) -> DataFrame:
    """Events and distinct active users per day, with one column per event type."""
    counts = events.groupBy("event_date").pivot("event_type", [
        "view", "cart", "purchase", "refund", "review", "service"]).agg(F.count(F.lit(1)))
    users = events.groupBy("event_date").agg(F.count_distinct("user_id").alias("active_users"))
    return users.join(counts, "event_date").na.fill(0).orderBy("event_date")
