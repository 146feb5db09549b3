"""The feature and label jobs on real Delta tables: partitions per date, re-runs, refusals."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.snapshots import run_features, run_labels
from churn_spark.tables import read_table, table_exists
from tests.builders import event, store_events
from tests.test_features import T, U1, U4, USERS

T2 = T - dt.timedelta(days=14)


def _partition(spark: SparkSession, config: Config, day: dt.date) -> list:
    return sorted(read_table(spark, config, "user_features").where(F.col("snapshot_date") == day).collect())


@pytest.mark.slow
def test_rerunning_a_date_replaces_exactly_its_partition(spark: SparkSession, config: Config) -> None:
    store_events(spark, config, U1, USERS)
    assert run_features(spark, config, [T, T2]) == 4  # T: u1, u2; T2: u1, u2
    first_t, first_t2 = _partition(spark, config, T), _partition(spark, config, T2)

    run_features(spark, config, [T])
    assert _partition(spark, config, T) == first_t and _partition(spark, config, T2) == first_t2

    store_events(spark, config, U4)  # a new user, active just before T
    run_features(spark, config, [T])
    assert [r.user_id for r in _partition(spark, config, T)] == ["u1", "u2", "u4"]
    assert _partition(spark, config, T2) == first_t2


def test_labels_refuse_an_incomplete_window_before_writing(spark: SparkSession, config: Config) -> None:
    store_events(spark, config, U1)
    with pytest.raises(InputError, match=r"^snapshot 2026-03-01: label window \[2026-03-01, 2026-03-31\) is not "):
        run_labels(spark, config, [T])
    assert not table_exists(spark, config, "training_set")


def test_jobs_need_an_events_table(spark: SparkSession, config: Config) -> None:
    with pytest.raises(InputError, match="no events table; run churn-spark ingest first"):
        run_features(spark, config, [T])


def test_labels_report_and_store_each_snapshots_eligible_users_and_churn_rate(
        spark: SparkSession, config: Config) -> None:
    def buy(user: str, when: str) -> tuple:
        return event(user, when, price=10.0)

    view = ("u8", dt.datetime(2026, 2, 20, 10), "view", "v8", "p1", "A", "app", None, None, 5.0, None, None)
    store_events(spark, config, [
        buy("u5", "2026-02-01 10:00:00"),                                    # T2 and T: churns
        buy("u6", "2026-02-01 10:00:00"), buy("u6", "2026-03-10 10:00:00"),  # T2 and T: stays
        buy("u7", "2026-02-20 10:00:00"), buy("u7", "2026-04-20 10:00:00"),  # T: churns; not eligible at T2
        view,                                                                # never eligible (no purchase)
    ])
    run = run_labels(spark, config, [T2, T])

    assert run.rows == 5
    assert [(s.snapshot_date, s.eligible_users, s.churners) for s in run.snapshots] == [(T2, 2, 1), (T, 3, 2)]
    assert run.lines() == [
        "training_set: 5 rows for 2 snapshot date(s)",
        "  2026-02-15: 2 eligible users, 1 churners, churn rate 0.5000",
        "  2026-03-01: 3 eligible users, 2 churners, churn rate 0.6667",
    ]
    stored = read_table(spark, config, "label_stats").orderBy("snapshot_date").collect()
    assert [(r.snapshot_date, r.eligible_users, r.churners, round(r.churn_rate, 6), r.horizon_days,
             r.lookback_days, r.eligibility) for r in stored] == [
        (T2, 2, 1, 0.5, 30, 90, "purchase"), (T, 3, 2, round(2 / 3, 6), 30, 90, "purchase")]
