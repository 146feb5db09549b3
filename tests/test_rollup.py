"""The user_daily rollup: features folded from it equal the full recomputation from raw events,
and the incremental build rebuilds exactly the days new events touch."""

from __future__ import annotations

import datetime as dt
import math
import random

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.features import catalogue, compute_features, features_from_daily
from churn_spark.features.recency import first_event_times
from churn_spark.generate import GenerateSpec
from churn_spark.rollup import daily_rows, run_rollup
from churn_spark.snapshots import build_training_set, run_features
from tests.builders import at, event, generated, make_events, store_events
from tests.test_features import SETTINGS, T, U1, USERS

START = dt.date(2026, 1, 1)
DAYS = 200


def _midnight_edges(t: dt.date) -> list[tuple]:
    """Events on day boundaries, where a fold over whole days could go wrong: contacts exactly
    7 days before T (judged at T) and a second after (not judged), purchases at midnight."""
    midnight = dt.datetime.combine(t, dt.time())
    week = dt.timedelta(days=7)
    return [
        event("edge1", midnight - week, "service"),
        event("edge2", midnight - week + dt.timedelta(seconds=1), "service"),
        event("edge3", midnight - week, "service"), event("edge3", midnight - dt.timedelta(days=3), "purchase"),
        event("edge4", midnight - dt.timedelta(days=30), "purchase"),
        event("edge4", midnight - dt.timedelta(days=60), "purchase", 2.5),
        event("edge4", midnight, "purchase"),
    ]


def _rows(frame: DataFrame) -> dict[tuple, dict]:
    return {(r["user_id"], r["snapshot_date"]): r.asDict() for r in frame.collect()}


def _assert_same(reference: DataFrame, folded: DataFrame, doubles: set[str]) -> None:
    """Same keys; every column equal, doubles to 1e-9 relative (their sums add in another order)."""
    expected, actual = _rows(reference), _rows(folded)
    assert actual.keys() == expected.keys()
    assert reference.columns == folded.columns
    for key, row in expected.items():
        for column, value in row.items():
            got = actual[key][column]
            if column in doubles:
                assert math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12), (key, column, value, got)
            else:
                assert got == value, (key, column, value, got)


@pytest.fixture(scope="module")
def history(spark: SparkSession) -> tuple[DataFrame, DataFrame, list[dt.date]]:
    """Generated events over 200 days with day-boundary cases added, their profiles, and five
    snapshot dates drawn at random (printed, so that a failure can be replayed)."""
    seed = random.randrange(10**6)
    dates = sorted(START + dt.timedelta(days=d) for d in random.Random(seed).sample(range(20, DAYS), 5))
    print(f"snapshot dates (seed {seed}): {dates}")
    events, users = generated(spark, GenerateSpec(users=80, days=DAYS, start=START, seed=seed % 97))
    edges = make_events(spark, [row for t in dates for row in _midnight_edges(t)])
    events = events.unionByName(edges, allowMissingColumns=True).cache()
    return events, users.cache(), dates


def test_features_from_the_rollup_equal_the_full_recomputation(history) -> None:
    events, users, dates = history
    firsts = first_event_times(events)
    reference = compute_features(events, users, dates, SETTINGS, firsts)
    folded = features_from_daily(daily_rows(events), users, dates, SETTINGS, firsts)
    doubles = {f.name for f in catalogue(SETTINGS) if f.dtype == "double"}
    assert reference.count() > 5 * 60  # the comparison covers a population, not a handful
    _assert_same(reference, folded, doubles)


def test_training_set_from_the_rollup_equals_the_one_from_events(history, config: Config) -> None:
    events, users, dates = history
    firsts = first_event_times(events)
    labelled = [d for d in dates if d + dt.timedelta(days=config.labels.horizon_days) <= START + dt.timedelta(DAYS)]
    reference = build_training_set(events, users, labelled, config, firsts)
    folded = build_training_set(events, users, labelled, config, firsts, daily=daily_rows(events))
    doubles = {f.name for f in catalogue(config.features) if f.dtype == "double"}
    _assert_same(reference, folded, doubles)


def test_a_contact_exactly_a_week_before_t_is_judged_on_both_paths(spark: SparkSession) -> None:
    events = make_events(spark, _midnight_edges(T))
    firsts = first_event_times(events)
    for frame in (compute_features(events, None, [T], SETTINGS, firsts),
                  features_from_daily(daily_rows(events), None, [T], SETTINGS, firsts)):
        unresolved = {r.user_id: r.service_unresolved_30d for r in frame.collect()}
        # edge1: judged, no purchase after; edge2: its week ends a second after T; edge3: bought.
        assert unresolved == {"edge1": 1, "edge2": 0, "edge3": 0, "edge4": 0}


def _stored(spark: SparkSession, config: Config) -> list:
    return sorted(tables.read_table(spark, config, "user_daily").collect())


def _recomputed(spark: SparkSession, config: Config) -> list:
    rows = daily_rows(tables.read_table(spark, config, "events"))
    return sorted(tables.conform(rows, config, "user_daily").collect())


def test_the_rollup_rebuilds_exactly_the_days_new_events_touch(spark: SparkSession, config: Config) -> None:
    store_events(spark, config, U1, USERS)
    first = run_rollup(spark, config)
    assert first.full and first.rows == 10  # u1's ten days with events
    assert _stored(spark, config) == _recomputed(spark, config)

    late = ("u1", at("2026-02-20 18:00:00"), "purchase", "s2", "p9", "Z", "web", 7.0, 3, None, None, None)
    store_events(spark, config, [late, event("u9", "2026-01-05 08:00:00", "view")])
    second = run_rollup(spark, config)
    week = [dt.date(2026, 2, 20) - dt.timedelta(days=k) for k in range(8)]
    weeks = sorted({*week, *(dt.date(2026, 1, 5) - dt.timedelta(days=k) for k in range(8))})
    assert not second.full and list(second.days) == weeks
    assert _stored(spark, config) == _recomputed(spark, config)
    day = {r.user_id: r for r in _stored(spark, config) if r.day == dt.date(2026, 2, 20)}
    assert (day["u1"].purchases, day["u1"].items, day["u1"].spend, day["u1"].views) == (1, 3, 21.0, 1)

    version = tables.version(spark, config, "user_daily")
    again = run_rollup(spark, config)
    assert (again.days, again.rows, again.full) == ((), 0, False)
    assert tables.version(spark, config, "user_daily") == version  # nothing committed


def test_a_purchase_arriving_later_resolves_an_earlier_contact(spark: SparkSession, config: Config) -> None:
    store_events(spark, config, [event("u1", "2026-02-10 10:00:00", "service")])
    run_rollup(spark, config)
    assert [(r.day, r.service_unresolved) for r in _stored(spark, config)] == [(dt.date(2026, 2, 10), 1)]
    store_events(spark, config, [event("u1", "2026-02-13 09:00:00", "purchase")])
    run_rollup(spark, config)
    assert [(r.day, r.service_unresolved) for r in _stored(spark, config)] == [
        (dt.date(2026, 2, 10), 0), (dt.date(2026, 2, 13), 0)]


def test_an_events_table_without_a_change_feed_gets_one_and_a_full_build(spark: SparkSession,
                                                                         config: Config) -> None:
    store_events(spark, config, U1[:3])
    spark.sql(f"ALTER TABLE delta.`{config.table('events')}` SET TBLPROPERTIES "
              "('delta.enableChangeDataFeed' = 'false')")  # as a lakehouse made before the rollup
    store_events(spark, config, U1[3:6])
    assert run_rollup(spark, config).full
    store_events(spark, config, [event("u1", "2026-02-27 08:00:00", "view")])
    second = run_rollup(spark, config)
    assert not second.full and dt.date(2026, 2, 27) in second.days
    assert _stored(spark, config) == _recomputed(spark, config)


def test_features_job_folds_the_rollup_like_the_reference(spark: SparkSession, config: Config) -> None:
    store_events(spark, config, U1, USERS)
    run_features(spark, config, [T], from_events=True)
    reference = tables.read_table(spark, config, "user_features").where(F.col("snapshot_date") == T).collect()
    run_features(spark, config, [T])
    folded = tables.read_table(spark, config, "user_features").where(F.col("snapshot_date") == T).collect()
    assert sorted(folded) == sorted(reference) and len(folded) == 2  # u1 and u2 (a profile, no events)
    assert tables.table_exists(spark, config, "user_daily")
