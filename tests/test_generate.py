"""The synthetic generator: determinism, realism of churn, and the dirt it plants."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from churn_spark.contract import EVENT_REASONS, RECORD, SOURCE_FILE, validate_events
from churn_spark.generate import GenerateSpec, generate

SPEC = GenerateSpec(users=400, days=150, start=dt.date(2026, 1, 1), seed=7)


@pytest.fixture(scope="module")
def generated(spark: SparkSession) -> tuple[DataFrame, DataFrame]:
    events, users = generate(spark, SPEC)
    return events.cache(), users.cache()


@pytest.mark.slow
def test_same_seed_same_rows_other_seed_other_rows(spark: SparkSession, generated) -> None:
    events, users = generated
    again_events, again_users = generate(spark, SPEC)
    assert sorted(again_events.collect()) == sorted(events.collect())
    assert sorted(again_users.collect()) == sorted(users.collect())
    other, _ = generate(spark, GenerateSpec(users=400, days=150, start=SPEC.start, seed=8))
    assert other.select("event_id", "event_time").exceptAll(events.select("event_id", "event_time")).count() > 0


def test_every_event_type_and_profile_field_is_present(generated) -> None:
    events, users = generated
    types = {r.event_type for r in events.select("event_type").distinct().collect()}
    assert {"view", "cart", "purchase", "refund", "review", "service"} <= types
    texts = [r.review_text for r in events.where("review_text IS NOT NULL").select("review_text").collect()]
    assert any(t.isascii() for t in texts) and any(not t.isascii() for t in texts)
    assert users.count() == SPEC.users
    assert users.where("membership_level IS NULL OR region IS NULL OR gender IS NULL").count() == 0


def _clean(events: DataFrame) -> DataFrame:
    rows = events.select(*events.columns, F.lit("").alias(RECORD), F.lit("").alias(SOURCE_FILE))
    return validate_events(rows, dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)).where(
        F.size("reasons") == 0).dropDuplicates(["event_id"])


def test_users_who_stop_fade_out_first(generated) -> None:
    """Churners' page views fall and their bad experiences rise in the weeks before they stop.

    Windows are counted back from each user's last session, which itself is left out (it is
    there by definition and would inflate the recent window of every sparse user), over users
    seen for more than 70 days (so that the earlier window is not before they joined).
    """
    events = _clean(generated[0])
    end = dt.datetime.combine(SPEC.start + dt.timedelta(days=SPEC.days), dt.time())
    per_session = events.groupBy("user_id", "session_id").agg(
        F.min("event_time").alias("at"),
        F.sum((F.col("event_type") == "view").cast("int")).alias("views"),
        F.sum((F.col("rating") <= 2).cast("int")).alias("low"),
        F.sum((F.col("event_type") == "review").cast("int")).alias("reviews"))
    user = Window.partitionBy("user_id")
    last, first = F.max("at").over(user), F.min("at").over(user)
    tenure = (F.unix_timestamp(last) - F.unix_timestamp(first)) / 86_400
    sessions = per_session.select(
        "*", ((F.unix_timestamp(last) - F.unix_timestamp("at")) / 86_400).alias("before"),
        tenure.alias("tenure"),
        (F.unix_timestamp(F.lit(end)) - F.unix_timestamp(last) > 45 * 86_400).alias("stopped"))
    summary = {
        (r.stopped, r.recent): r for r in sessions.where("before > 0 AND before < 56 AND tenure > 70").groupBy(
            "stopped", (F.col("before") < 28).alias("recent")).agg(
            F.sum("views").alias("views"), (F.sum("low") / F.sum("reviews")).alias("low")).collect()
    }
    churn_trend = summary[(True, True)].views / summary[(True, False)].views
    active_trend = summary[(False, True)].views / summary[(False, False)].views
    assert churn_trend < 0.75 * active_trend
    assert summary[(True, True)].low > 2 * summary[(False, True)].low


def test_planted_dirt_breaks_each_rule_and_redeliveries_are_exact(generated) -> None:
    events = generated[0]
    rows = events.select(*events.columns, F.lit("").alias(RECORD), F.lit("").alias(SOURCE_FILE))
    checked = validate_events(rows, dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc))
    codes = {r.code for r in checked.select(F.explode("reasons").alias("code")).distinct().collect()}
    # How a record arrives (its bytes, its JSON types, its text's length) is not planted.
    assert codes == set(EVENT_REASONS) - {"bad_type", "bad_encoding", "text_too_long"}
    share = checked.where(F.size("reasons") > 0).count() / checked.count()
    assert 0.5 * SPEC.dirty_fraction < share < 2 * SPEC.dirty_fraction
    total, distinct_rows, distinct_ids = events.where("event_id != ''").select(
        F.count(F.lit(1)), F.count_distinct(F.struct(*events.columns)), F.count_distinct("event_id")).first()
    assert total - distinct_ids == total - distinct_rows > 0.5 * SPEC.redelivered_fraction * total
