"""The ``user_daily`` rollup: per user and UTC day, the partial aggregates every feature folds.

``run_rollup`` keeps the table current incrementally. Each of its commits records, in the
commit's ``userMetadata``, the version of the ``events`` table it covers. The next run reads
the events table's change data feed from there to the current version, takes the days the
new (or late, or deleted) events fall on, and rebuilds exactly those days, plus the week
before each: a service contact's partial says whether a purchase followed within seven days,
so a purchase arriving today can change the partial of a contact up to a week ago. Only the
events of the rebuilt days and the week after each (that follow-up) are read; a day nothing
touched is never rescanned. With no new events version there is nothing to do and no commit.

A full build (the first run, an events table whose history no longer reaches the recorded
version, or ``full=True``) computes every day from the whole events table and overwrites the
table. Every write is one Delta transaction, so a run killed part-way leaves the previous
state (table and recorded version) readable and the next run redoes the work.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass

from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.features import prepare_events
from churn_spark.features.partials import PARTIALS
from churn_spark.features.service import FOLLOW_UP_DAYS
from churn_spark.labels import event_day

log = logging.getLogger(__name__)

_TAG = "churn-spark rollup "  # prefix of the userMetadata of the rollup's commits


@dataclass(frozen=True)
class RollupRun:
    """What one ``run_rollup`` did."""

    events_version: int  # the events table version user_daily now covers
    full: bool  # every day rebuilt (else the days touched since the last run)
    days: tuple[dt.date, ...]  # the days rebuilt (empty for a full build: all of them)
    rows: int  # user_daily rows written
    reason: str  # why a full build, or what the incremental run found

    def summary(self) -> str:
        if self.full:
            return f"user_daily: full build, {self.rows} rows (events version {self.events_version}; {self.reason})"
        if not self.days:
            return f"user_daily: up to date with events version {self.events_version} ({self.reason})"
        span = f"{self.days[0]}..{self.days[-1]}" if len(self.days) > 1 else f"{self.days[0]}"
        return (f"user_daily: rebuilt {len(self.days)} day(s) ({span}), {self.rows} rows, "
                f"now at events version {self.events_version}")


def daily_rows(events: DataFrame, days: list[dt.date] | None = None) -> DataFrame:
    """``user_daily`` rows (user_id, day, every partial) of ``events``, or of their ``days`` only.

    ``events`` must hold, for each day wanted, that day's events and those of the
    ``FOLLOW_UP_DAYS`` days after it (the follow-up of its service contacts).
    """
    prepared = prepare_events(events).withColumn("day", event_day(F.col("event_time")))
    if days is not None:
        prepared = prepared.where(F.col("day").isin(days))
    return prepared.groupBy("user_id", "day").agg(*[c for p in PARTIALS.values() for c in p.daily()])


def run_rollup(spark: SparkSession, config: Config, full: bool = False) -> RollupRun:
    """Bring ``user_daily`` up to the current ``events`` table (see the module docstring).

    Raises
    ------
    InputError
        If there is no events table.
    """
    if not tables.table_exists(spark, config, "events"):
        raise InputError(f"{config.table('events')}: no events table; run churn-spark ingest first")
    tables.keep_change_feed(spark, config, "events")
    current = tables.version(spark, config, "events")
    covered = None if full else _covered_version(spark, config)
    if covered is not None and covered == current:
        return RollupRun(current, False, (), 0, "no new events")
    if covered is None:
        touched, reason = None, "asked for" if full else "no earlier rollup"
    else:
        touched, reason = _touched_days(spark, config, covered, current)
    tag = _TAG + json.dumps({"events_version": current, "run": str(uuid.uuid4())})
    events = tables.read_table(spark, config, "events", version=current)
    if touched is None:
        rows = tables.replace_dates(_by_day(daily_rows(events)), config, "user_daily", None, tag=tag)
        run = RollupRun(current, True, (), rows, reason)
    else:
        days, needed = days_to_rebuild(touched)
        frame = daily_rows(events.where(F.col("event_date").isin(needed)), days)
        rows = tables.replace_dates(_by_day(frame), config, "user_daily", days, tag=tag)
        run = RollupRun(current, False, tuple(days), rows, reason)
    log.info("%s", run.summary())
    return run


def days_to_rebuild(touched: list[dt.date]) -> tuple[list[dt.date], list[dt.date]]:
    """The days whose partials new events on ``touched`` days change (each day and the week
    before it: the service follow-up), and the days of events those partials are computed from
    (each rebuilt day and the week after it)."""
    week = range(FOLLOW_UP_DAYS + 1)
    rebuilt = sorted({d - dt.timedelta(days=k) for d in touched for k in week})
    return rebuilt, sorted({d + dt.timedelta(days=k) for d in rebuilt for k in week})


def _by_day(frame: DataFrame) -> DataFrame:
    """One task per day writes a day's rows: a file per day partition, not one per shuffle task."""
    return frame.repartition("day")


def _covered_version(spark: SparkSession, config: Config) -> int | None:
    """The events version the last rollup commit covers; None where there is none to build on."""
    if not tables.table_exists(spark, config, "user_daily"):
        return None
    tag = tables.last_tagged(spark, config, "user_daily", _TAG)
    return None if tag is None else int(json.loads(tag[len(_TAG):])["events_version"])


def _touched_days(spark: SparkSession, config: Config, covered: int,
                  current: int) -> tuple[list[dt.date] | None, str]:
    """The days of the events inserted, updated or deleted after version ``covered`` up to
    ``current``, read from the change data feed; None (a full build) where the feed does not
    reach back that far or the table was replaced since."""
    if current < covered:
        return None, f"the events table is at version {current}, before the recorded {covered}: it was replaced"
    try:
        changed = tables.changes(spark, config, "events", covered + 1, current)
        days = [r["event_date"] for r in changed.select("event_date").distinct().collect()]
    except PySparkException as err:  # the feed was off, or its files were vacuumed
        log.info("user_daily: change data feed unreadable from version %d (%s)", covered + 1,
                 str(err).splitlines()[0])
        return None, f"the events change feed does not reach version {covered + 1}"
    return sorted(d for d in days if d is not None), f"events versions {covered + 1}..{current}"
