"""Point-in-time: the one place that decides what is "before T" and what is "after T".

Snapshot T is a date, meaning midnight UTC at its start. Features use events strictly
before T; labels use events in [T, T + horizon). ``snapshot_rows`` pairs each event with
every snapshot it is relevant to, in one pass over the events, and says on which side of T
it lies; ``label_aggregates`` turns the after-T side into churn labels.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from churn_spark.errors import InputError

_DAY_US = 86_400 * 1_000_000


def snapshot_start(snapshot_date: Column) -> Column:
    """T as a timestamp: midnight UTC at the start of the snapshot date."""
    return snapshot_date.cast("timestamp")


def event_day(time: Column) -> Column:
    """The UTC day ``time`` falls on (the session time zone is UTC: ``churn_spark.spark``)."""
    return F.to_date(time)


def days_before_t(time: Column, snapshot_date: Column) -> Column:
    """Days from ``time`` to T where ``time`` is strictly before T; null at or after T.

    For per-user state kept outside the events' history window, such as the time of a user's
    first event ever: if that is before T, it is also the user's first event before T.
    """
    days = (F.unix_micros(snapshot_start(snapshot_date)) - F.unix_micros(time)) / _DAY_US
    return F.when(days > 0, days)


def snapshot_rows(
    events: DataFrame, snapshot_dates: Sequence[dt.date], before_days: int, after_days: int = 0
) -> DataFrame:
    """Each event paired with each snapshot T for which it lies in [T - before_days, T + after_days).

    Parameters
    ----------
    events
        Rows with ``event_time`` (timestamp, UTC).
    snapshot_dates
        The snapshot dates T.
    before_days, after_days
        How far before and after T an event is still relevant.

    Returns
    -------
    DataFrame
        The events' columns plus ``snapshot_date``, ``before_t`` (event_time < T) and
        ``days_before_t`` ((T - event_time) in days: > 0 before T, <= 0 from T on).
    """
    dates = _snapshot_dates(snapshot_dates, before_days, after_days)
    first = dt.datetime.combine(dates[0], dt.time(), dt.timezone.utc) - dt.timedelta(days=before_days)
    last = dt.datetime.combine(dates[-1], dt.time(), dt.timezone.utc) + dt.timedelta(days=after_days)
    in_range = events.where((F.col("event_time") >= F.lit(first)) & (F.col("event_time") < F.lit(last)))
    if "event_date" in events.columns:  # partition pruning on the events table
        in_range = in_range.where(F.col("event_date").between(first.date(), last.date()))
    micros = F.unix_micros("event_time")

    def relevant(t: Column) -> Column:
        start = F.unix_micros(snapshot_start(t))
        return (micros >= start - before_days * _DAY_US) & (micros < start + after_days * _DAY_US)

    paired = in_range.withColumn(
        "snapshot_date", F.explode(F.filter(F.array(*[F.lit(d) for d in dates]), relevant)))
    days_before = (F.unix_micros(snapshot_start(F.col("snapshot_date"))) - micros) / _DAY_US
    return paired.withColumn("days_before_t", days_before).withColumn("before_t", days_before > 0)


def snapshot_days(
    daily: DataFrame, snapshot_dates: Sequence[dt.date], before_days: int, after_days: int = 0
) -> DataFrame:
    """``snapshot_rows`` for per-day rows: each ``user_daily`` row paired with each T whose
    [T - before_days, T + after_days) holds its ``day``.

    ``days_before_t`` is then the whole number of days from the day to T (``datediff``: 1 for
    the day before T, 0 for T itself) and ``before_t`` says the day is before T. Because T is a
    midnight and the day a whole day, a condition on an event's ``days_before_t`` that compares
    with a whole number of days (``<= w``, ``> w``) holds for the day's row exactly when it holds
    for each of the day's events; ``>= w`` does not (see ``features.partials``).
    """
    dates = _snapshot_dates(snapshot_dates, before_days, after_days)
    first, last = dates[0] - dt.timedelta(days=before_days), dates[-1] + dt.timedelta(days=after_days)
    in_range = daily.where((F.col("day") >= F.lit(first)) & (F.col("day") < F.lit(last)))

    def relevant(t: Column) -> Column:
        days = F.datediff(t, F.col("day"))
        return (days <= before_days) & (days > -after_days)

    paired = in_range.withColumn(
        "snapshot_date", F.explode(F.filter(F.array(*[F.lit(d) for d in dates]), relevant)))
    days_before = F.datediff(F.col("snapshot_date"), F.col("day"))
    return paired.withColumn("days_before_t", days_before).withColumn("before_t", days_before > 0)


def _snapshot_dates(snapshot_dates: Sequence[dt.date], before_days: int, after_days: int) -> list[dt.date]:
    """The distinct dates, sorted, once the arguments of a pairing are checked."""
    if not snapshot_dates:
        raise ValueError("snapshot_dates: give at least one date")
    if before_days < 1 or after_days < 0:
        raise ValueError(f"before_days must be >= 1 and after_days >= 0, got {before_days}, {after_days}")
    return sorted(set(snapshot_dates))


def label_aggregates(horizon_days: int, lookback_days: int, eligibility: str = "purchase",
                     daily: bool = False) -> list[Column]:
    """Aggregates over ``snapshot_rows`` output (or, ``daily``, ``snapshot_days`` output over
    ``user_daily``), per (user_id, snapshot_date): ``eligible`` and ``label``.

    Eligible: a purchase (or, with ``eligibility="any_activity"``, any event) in
    [T - lookback, T). ``label`` is 1 when the user makes no purchase in [T, T + horizon).
    """
    if eligibility not in ("purchase", "any_activity"):
        raise ValueError(f"eligibility must be 'purchase' or 'any_activity', got {eligibility!r}")
    purchase = F.col("purchases") > 0 if daily else F.col("event_type") == "purchase"
    counts = F.lit(True) if eligibility == "any_activity" else purchase
    before = F.col("before_t") & (F.col("days_before_t") <= lookback_days)
    after = ~F.col("before_t") & (-F.col("days_before_t") < horizon_days)
    return [F.max(F.when(before & counts, 1).otherwise(0)).alias("eligible"),
            (1 - F.max(F.when(after & purchase, 1).otherwise(0))).cast("int").alias("label")]


def check_label_windows(snapshot_dates: Sequence[dt.date], horizon_days: int, last_event: dt.datetime | None) -> None:
    """Refuse a snapshot whose label window [T, T + horizon) runs past the last event.

    Raises
    ------
    InputError
        One line naming the first such snapshot.
    """
    if last_event is None:
        raise InputError("labels: the events table is empty")
    for day in sorted(snapshot_dates):
        window_end = dt.datetime.combine(day, dt.time()) + dt.timedelta(days=horizon_days)
        if window_end > last_event:
            raise InputError(
                f"snapshot {day}: label window [{day}, {window_end.date()}) is not complete in the data "
                f"(last event {last_event:%Y-%m-%d %H:%M:%S}); pick an earlier date or a shorter --horizon")
