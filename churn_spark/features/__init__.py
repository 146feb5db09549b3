"""Point-in-time behavioural features per user and snapshot date, many snapshots in one pass.

The catalogue is declared in the family modules (each ``features(ctx) -> list[Feature]``);
``compute_features`` pairs every event with the snapshots it is relevant to (one read of
the events), aggregates every feature of every family and window in one ``groupBy``, and
gives every user known at T a row, with the "none" value of each feature where the user
has nothing to compute it from.

Every feature value is finite and fits its type: ``assemble`` writes a double that is not
finite (possible only from events stored before the contract bounded prices, quantities
and dwell times) as the feature's "none" value, and holds an int past the 32-bit range
(the items of a user buying the largest quantity thousands of times) at its end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from churn_spark.config import FeaturesConfig
from churn_spark.errors import ChurnSparkError
from churn_spark.features import (
    breadth, browsing, frequency, funnel, loyalty, monetary, profile, recency, reviews, service, trends,
)
from churn_spark.features.catalogue import Context, Feature
from churn_spark.features.recency import FIRST_EVENT_TIME, first_event_times
from churn_spark.features.service import FOLLOW_UP_DAYS
from churn_spark.labels import snapshot_days, snapshot_rows, snapshot_start
from churn_spark.sentiment import sentiment_column

FAMILIES = (recency, frequency, monetary, browsing, funnel, breadth, loyalty, trends, reviews, service, profile)
KEYS = ("user_id", "snapshot_date")
_PROFILE_COLUMNS = ("signup_time", "gender", "age", "region", "membership_level")
_SEEN = "_event_before_t"  # the user has an event in the history window before T


def catalogue(settings: FeaturesConfig, daily: bool = False) -> list[Feature]:
    """Every feature, family by family, in output order (no Spark session needed); ``daily``:
    with values that fold ``user_daily`` rows instead of aggregating events."""
    return [feature for family in FAMILIES for feature in family.features(context(settings, daily))]


def context(settings: FeaturesConfig, daily: bool = False) -> Context:
    """The families' column helpers for these settings."""
    return Context(tuple(settings.windows), settings.history_days, daily,
                   tuple((family, tuple(windows)) for family, windows in settings.family_windows.items()))


def family_of(feature: Feature, settings: FeaturesConfig) -> str:
    """The family module name a feature is declared in."""
    ctx = context(settings)
    for family in FAMILIES:
        if feature.name in {f.name for f in family.features(ctx)}:
            return family.__name__.rsplit(".", 1)[-1]
    raise ValueError(f"feature: {feature.name} is in no family")


def compute_features(
    events: DataFrame, users: DataFrame | None, snapshot_dates: Sequence[dt.date], settings: FeaturesConfig,
    first_events: DataFrame | None = None,
) -> DataFrame:
    """One row per (user known at T, T) with every feature of the catalogue.

    Parameters
    ----------
    events
        The ``events`` table (or rows shaped like it).
    users
        The ``users`` table, or None where there are no profiles.
    snapshot_dates
        The dates T.
    settings
        Windows and history length.
    first_events
        Per user the time of their first event ever (``user_id``, ``first_event_time``: the
        ``first_events`` table), for tenure and days since the first event; None: taken from
        ``events``, which then hold the whole history.
    """
    return assemble(events, users, snapshot_dates, settings, first_events=first_events)


def assemble(
    events: DataFrame,
    users: DataFrame | None,
    snapshot_dates: Sequence[dt.date],
    settings: FeaturesConfig,
    after_days: int = 0,
    extra: Sequence[Column] = (),
    first_events: DataFrame | None = None,
) -> DataFrame:
    """``compute_features``, with ``extra`` aggregates (over events up to T + after_days) kept."""
    paired = snapshot_rows(prepare_events(events), snapshot_dates, settings.history_days, after_days)
    firsts = first_events if first_events is not None else first_event_times(events)
    return _fold(paired, catalogue(settings), users, snapshot_dates, firsts, extra)


def features_from_daily(
    daily: DataFrame,
    users: DataFrame | None,
    snapshot_dates: Sequence[dt.date],
    settings: FeaturesConfig,
    first_events: DataFrame,
    after_days: int = 0,
    extra: Sequence[Column] = (),
) -> DataFrame:
    """``assemble`` from the ``user_daily`` rollup instead of the events: the same rows and
    values (exact for counts, sets and times; sums of doubles up to their order of addition).

    ``extra`` aggregates are over the daily rows paired with T (``labels.snapshot_days``) up to
    T + after_days; ``first_events`` is the ``first_events`` table.
    """
    paired = snapshot_days(daily, snapshot_dates, settings.history_days, after_days)
    return _fold(paired, catalogue(settings, daily=True), users, snapshot_dates, first_events, extra)


def _fold(paired: DataFrame, features: list[Feature], users: DataFrame | None, snapshot_dates: Sequence[dt.date],
          firsts: DataFrame, extra: Sequence[Column]) -> DataFrame:
    """Every feature per (user known at T, T) from rows paired with T, and the ``extra`` aggregates."""
    aggregated = paired.groupBy(*KEYS).agg(
        *[f.value().alias(f.name) for f in features if f.stage == "events"], *extra,
        F.max(F.col("before_t").cast("int")).alias(_SEEN))
    extra_names = [c for c in aggregated.columns if c not in (*KEYS, _SEEN) and c not in {f.name for f in features}]
    known = _known_users(users, snapshot_dates, aggregated).join(
        firsts.select("user_id", FIRST_EVENT_TIME), "user_id", "left")
    event_stage = [f.finished(_storable(f, F.col(f.name))) for f in features if f.stage == "events"]
    with_events = known.select(*KEYS, *_PROFILE_COLUMNS, FIRST_EVENT_TIME, *event_stage, *extra_names)
    return with_events.select(
        *KEYS, *[F.col(f.name) if f.stage == "events" else f.finished(_storable(f, f.value())) for f in features],
        *extra_names)


def _storable(feature: Feature, value: Column) -> Column:
    """``value`` as its feature's type can hold it: a double that is not finite is null (then
    the "none" value), an int past the 32-bit range is held at the range's end."""
    if feature.dtype == "double":
        return F.when(~F.isnan(value) & (F.abs(value) != float("inf")), value)
    if feature.dtype == "int":
        low, high = -(2**31), 2**31 - 1
        return F.when(value > high, high).when(value < low, low).otherwise(value)
    return value


def prepare_events(events: DataFrame) -> DataFrame:
    """Per-event inputs of the families: review sentiment, and whether a service contact was
    followed by a purchase within the follow-up week (strictly after it)."""
    micros = F.unix_micros("event_time")
    later = Window.partitionBy("user_id").orderBy(-micros).rangeBetween(Window.unboundedPreceding, -1)
    next_purchase = F.min(F.when(F.col("event_type") == "purchase", micros)).over(later)
    follow_up = FOLLOW_UP_DAYS * 86_400 * 1_000_000
    return events.select(
        "user_id", "event_time", "event_type", "session_id", "product_id", "category", "channel",
        "price", "quantity", "dwell_seconds", "rating",
        *(["event_date"] if "event_date" in events.columns else []),
        F.when(F.col("event_type") == "review", sentiment_column(F.col("review_text"))).alias("sentiment"),
        F.coalesce(next_purchase < micros + follow_up, F.lit(False)).alias("purchase_within_7d"),
    )


def _known_users(users: DataFrame | None, snapshot_dates: Sequence[dt.date], aggregated: DataFrame) -> DataFrame:
    """Users known at T (signed up before T, or with an event before T), profile and aggregates joined."""
    spark = aggregated.sparkSession
    dates = spark.createDataFrame([(d,) for d in sorted(set(snapshot_dates))], "snapshot_date date")
    if users is None:
        profiles = spark.createDataFrame([], "user_id string, snapshot_date date, signup_time timestamp, "
                                             "gender string, age int, region string, membership_level string")
    else:
        profiles = users.select("user_id", *_PROFILE_COLUMNS).crossJoin(dates)
    joined = profiles.join(aggregated, list(KEYS), "full")
    signed_up = F.col("signup_time") < snapshot_start(F.col("snapshot_date"))
    seen = F.coalesce(F.col(_SEEN) == 1, F.lit(False))
    return joined.where(signed_up | seen)


def check_schema(frame: DataFrame, settings: FeaturesConfig) -> None:
    """Raise unless ``frame`` has exactly the keys and the catalogue's features, typed as declared."""
    expected = [("user_id", "string"), ("snapshot_date", "date")] + [
        (f.name, f.dtype) for f in catalogue(settings)]
    actual = [(f.name, f.dataType.simpleString()) for f in frame.schema.fields][: len(expected)]
    if actual != expected:
        wrong = next((e, a) for e, a in zip(expected, actual + [("", "")] * len(expected)) if e != a)
        raise ChurnSparkError(f"feature output does not match the catalogue: expected {wrong[0]}, got {wrong[1]}")
