"""Data-quality views over the tables, for notebooks and reports (pure transforms, small outputs)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from churn_spark.config import FeaturesConfig
from churn_spark.features import catalogue, family_of


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


def label_rates(training_set: DataFrame) -> DataFrame:
    """Per snapshot: eligible users, churners and the churn rate."""
    return (training_set.groupBy("snapshot_date")
            .agg(F.count(F.lit(1)).alias("users"), F.sum("label").cast("long").alias("churners"))
            .withColumn("churn_rate", F.round(F.col("churners") / F.col("users"), 4)).orderBy("snapshot_date"))


def feature_coverage(features: DataFrame, settings: FeaturesConfig) -> DataFrame:
    """Per feature, the share of rows whose value is not the feature's "none" value.

    A feature a source cannot feed (page views, reviews, service contacts in transaction-only
    data) shows 0: every user carries its none value, the model sees a constant.
    """
    features_ = catalogue(settings)
    names = [f.name for f in features_]
    flags = features.select(*[(F.col(f.name) != F.lit(f.none)).cast("double").alias(f.name) for f in features_])
    shares = (flags.unpivot([], names, "feature", "not_none").groupBy("feature")
              .agg(F.round(F.avg("not_none"), 4).alias("share_not_none")))
    families = features.sparkSession.createDataFrame(
        [(i, f.name, family_of(f, settings)) for i, f in enumerate(features_)],
        "position int, feature string, family string")
    return families.join(shares, "feature").orderBy("position").select("feature", "family", "share_not_none")


def rows_per_snapshot(frame: DataFrame) -> DataFrame:
    """Rows (users) per snapshot date of ``user_features``, ``training_set`` or ``churn_scores``."""
    return frame.groupBy("snapshot_date").agg(F.count(F.lit(1)).alias("users")).orderBy("snapshot_date")
