"""Point-in-time correctness: labels, the boundary at T, and leakage on generated data."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from churn_spark.config import load_config
from churn_spark.errors import InputError
from churn_spark.features import compute_features
from churn_spark.generate import GenerateSpec
from churn_spark.labels import check_label_windows
from churn_spark.snapshots import build_training_set
from tests.builders import at, event, generated, make_events, make_users
from tests.conftest import ROOT, TEST_SETTINGS
from tests.test_features import AT_T, SETTINGS, T, U1, USERS

CONFIG = load_config(ROOT / "conf" / "local.yaml", TEST_SETTINGS)


def test_labels_eligibility_and_the_boundary_at_t(spark: SparkSession) -> None:
    rows = [
        *U1, AT_T,                                                  # u1: buys exactly at T -> stays (0)
        event("u5", "2026-02-01 10:00:00"),                         # u5: bought, silent after -> churns (1)
        event("u6", "2026-02-01 10:00:00"),
        event("u6", "2026-03-30 23:59:59"),                         # u6: buys on the last day of the horizon
        event("u7", "2026-02-01 10:00:00"),
        event("u7", "2026-03-31 00:00:00"),                         # u7: buys at T + 30 days: too late (1)
        event("u8", "2026-02-27 10:00:00", "view"),                 # u8: no purchase before T: not eligible
        event("u9", "2025-11-01 10:00:00"),                         # u9: purchase before the 90-day lookback
    ]
    training = build_training_set(make_events(spark, rows), make_users(spark, USERS), [T], CONFIG)
    assertDataFrameEqual(training.select("user_id", "snapshot_date", "label"), [
        Row("u1", T, 0), Row("u5", T, 1), Row("u6", T, 0), Row("u7", T, 1)])


def test_any_activity_eligibility(spark: SparkSession) -> None:
    config = CONFIG.model_copy(update={"labels": CONFIG.labels.model_copy(update={"eligibility": "any_activity"})})
    rows = [event("u8", "2026-02-27 10:00:00", "view")]
    training = build_training_set(make_events(spark, rows), None, [T], config)
    assertDataFrameEqual(training.select("user_id", "label"), [Row("u8", 1)])


def test_event_at_t_counts_for_the_label_not_the_features(spark: SparkSession) -> None:
    users = make_users(spark, USERS)
    without = compute_features(make_events(spark, U1), users, [T], SETTINGS).where("user_id = 'u1'")
    with_t = compute_features(make_events(spark, [*U1, AT_T]), users, [T], SETTINGS).where("user_id = 'u1'")
    assert with_t.collect() == without.collect()
    moved = AT_T[:1] + (at("2026-02-28 23:59:59"),) + AT_T[2:]        # one second before T: counted
    before = compute_features(make_events(spark, [*U1, moved]), users, [T], SETTINGS).where("user_id = 'u1'")
    assert before.first()["purchases_7d"] == without.first()["purchases_7d"] + 1


def test_incomplete_label_window_is_refused_in_one_line() -> None:
    last = dt.datetime(2026, 3, 30, 12)
    check_label_windows([dt.date(2026, 2, 28)], 30, last)
    with pytest.raises(InputError) as err:
        check_label_windows([dt.date(2026, 2, 28), dt.date(2026, 3, 1)], 30, last)
    assert str(err.value) == ("snapshot 2026-03-01: label window [2026-03-01, 2026-03-31) is not complete in the "
                              "data (last event 2026-03-30 12:00:00); pick an earlier date or a shorter --horizon")


@pytest.mark.slow
def test_no_feature_sees_events_at_or_after_t(spark: SparkSession) -> None:
    """Property on generated data: drop, move or rewrite every event at or after T -> no feature changes."""
    start = dt.date(2026, 1, 1)
    events, users = generated(spark, GenerateSpec(users=120, days=120, start=start, seed=11))
    events = events.cache()
    dates = [start + dt.timedelta(days=d) for d in (60, 74, 95)]
    t0 = dt.datetime.combine(dates[0], dt.time())
    after = F.col("event_time") >= F.lit(t0)

    def features(frame: DataFrame) -> list[Row]:
        return sorted(compute_features(frame, users, dates[:1], SETTINGS).collect())

    baseline = features(events)
    dropped = events.where(~after)
    rewritten = events.withColumn("event_type", F.when(after, F.lit("purchase")).otherwise(F.col("event_type"))) \
        .withColumn("price", F.when(after, F.lit(999.0)).otherwise(F.col("price")))
    moved = events.withColumn("event_time", F.when(after, F.col("event_time") + F.expr("INTERVAL 3 DAYS"))
                              .otherwise(F.col("event_time")))
    assert len(baseline) > 100
    for changed in (dropped, rewritten, moved):
        assert features(changed) == baseline
    # The test can fail: the same change one day earlier does move features.
    earlier = events.withColumn("event_time", F.when(after, F.col("event_time") - F.expr("INTERVAL 1 DAYS"))
                                .otherwise(F.col("event_time")))
    assert features(earlier) != baseline
    # And several snapshots in one pass equal one pass per snapshot.
    together = compute_features(events, users, dates, SETTINGS)
    for day in dates:
        one = sorted(compute_features(events, users, [day], SETTINGS).collect())
        assert sorted(together.where(F.col("snapshot_date") == day).collect()) == one
