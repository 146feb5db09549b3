"""Real-time churn warnings: a micro-batch of new events in, the changed users re-scored, warnings out.

The state is ``user_daily`` itself. For every user in a micro-batch, the rows of the days the
new events fall on, and of the week before each (a purchase can resolve a service contact up to
a week back: ``rollup``), are recomputed from the events table with the rollup's own
``daily_rows`` and merged in. The features "now" are then folded from that user's rows exactly
as the batch jobs fold them (``features_from_daily`` at T = the day after the clock's day, so
every event of today so far counts), and scored by the batch job's ``scored``. There is one
definition of every feature and one scorer: a streamed score is the batch job's score at T
over the same events.

Why not a stateful operator (``transformWithStateInPandas`` with RocksDB): the features look up
to ``history_days`` back, so a state store would hold a second copy of the partials, in
another shape, folded by a second implementation; and the batch jobs could not read it.
Merging into ``user_daily`` keeps one copy that the daily rollup, the feature job and the
stream all read, and a recomputation is idempotent: a micro-batch run twice after a crash
writes the same rows.

Warnings compare each score with the day's baseline, the latest batch scoring run at or before
today (``churn_scores``; the daily job scores at T = today from the events before today), whose
tier cut-offs the stream keeps. Kinds: ``high_tier`` (crossed into the high tier today),
``probability_rise`` (rose by more than ``stream.probability_rise`` since the baseline), and
``silent`` (a high-value user whose last event is exactly ``stream.silent_days`` days old: a
sweep run once per day of the stream's clock). Every warning is keyed by (user, kind, day) and
merged insert-only, so each is written at most once, across restarts and re-run batches.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.alerts import action_column, previous_run
from churn_spark.config import Config
from churn_spark.errors import ChurnSparkError, InputError
from churn_spark.features import features_from_daily
from churn_spark.features.recency import first_event_times
from churn_spark.rollup import daily_rows, days_to_rebuild, run_rollup
from churn_spark.score import check_compatible, scored, tier_column, with_model_inputs
from churn_spark.snapshots import read_first_events, read_inputs
from churn_spark.train.bundle import Bundle

log = logging.getLogger(__name__)

KINDS = ("high_tier", "probability_rise", "silent")


@dataclass(frozen=True)
class Baseline:
    """The day's starting point: each user's probability and tier in the latest batch scoring
    run at or before the day, the tier cut-offs, and the spend that makes a user high value."""

    day: dt.date
    scores: DataFrame  # user_id, probability_before, tier_before, spend_before
    high: float
    medium: float
    high_value: float | None  # None: no scoring run, no silent sweep


@dataclass
class Progress:
    """What the stream has done so far (the sums over its micro-batches)."""

    batches: int = 0
    users_scored: int = 0
    warnings: int = 0
    days_swept: list[dt.date] = field(default_factory=list)

    def summary(self) -> str:
        swept = f"; silent sweep on {', '.join(map(str, self.days_swept))}" if self.days_swept else ""
        return (f"stream: {self.batches} micro-batch(es), {self.users_scored} user score(s), "
                f"{self.warnings} new warning(s){swept}")


def refresh_daily(spark: SparkSession, config: Config, users: DataFrame, days: list[dt.date]) -> None:
    """Recompute the ``user_daily`` rows of ``users`` for ``days`` and the week before each,
    from the events table, and merge them in (one transaction)."""
    rebuilt, needed = days_to_rebuild(days)
    events = (tables.read_table(spark, config, "events").where(F.col("event_date").isin(needed))
              .join(F.broadcast(users), "user_id", "left_semi"))
    rows = tables.conform(daily_rows(events, rebuilt), config, "user_daily")
    tables.merge(spark, config, "user_daily", rows, ("user_id", "day"), update_when="true",
                 within=f"t.day IN ({tables.date_list(rebuilt)})")


def features_now(spark: SparkSession, config: Config, users: DataFrame, as_of: dt.date) -> DataFrame:
    """The features of ``users`` at ``as_of``, folded from their ``user_daily`` rows as the
    batch jobs fold them (``snapshots.features_at``), reading only these users' rows."""
    chosen = F.broadcast(users)
    events, profiles = read_inputs(spark, config)
    daily = tables.read_table(spark, config, "user_daily").join(chosen, "user_id", "left_semi")
    firsts = read_first_events(spark, config)
    if firsts is None:
        firsts = first_event_times(events.join(chosen, "user_id", "left_semi"))
    if profiles is not None:
        profiles = profiles.join(chosen, "user_id", "left_semi")
    return features_from_daily(daily, profiles, [as_of], config.features,
                               firsts.join(chosen, "user_id", "left_semi"))


def read_baseline(spark: SparkSession, config: Config, day: dt.date) -> Baseline:
    """The latest batch scoring run at or before ``day`` and its tier cut-offs.

    Raises
    ------
    InputError
        Tiers by quantile (``score.tiers_by``) and no scoring run to take the cut-offs from.
    """
    run = None
    if tables.table_exists(spark, config, "churn_scores"):
        run = previous_run(tables.read_table(spark, config, "churn_scores"), day + dt.timedelta(days=1))
    settings = config.score
    if run is None:
        if settings.tiers_by == "quantile":
            raise InputError(f"{config.table('churn_scores')}: no scoring run at or before {day} to take "
                             "the tier cut-offs from; run churn-spark score first, or set score.tiers_by=probability")
        empty = spark.createDataFrame([], "user_id string, probability_before double, tier_before string, "
                                          "spend_before double")
        return Baseline(day, empty, settings.high, settings.medium, None)
    before = run.select("user_id", F.col("churn_probability").alias("probability_before"),
                        F.col("risk_tier").alias("tier_before"), F.col("spend_90d").alias("spend_before"))
    row = run.agg(
        F.min(F.when(F.col("risk_tier") == "high", F.col("churn_probability"))).alias("high"),
        F.min(F.when(F.col("risk_tier") == "medium", F.col("churn_probability"))).alias("medium"),
        F.percentile_approx(F.when(F.col("risk_tier") != "lapsed", F.col("spend_90d")),
                            config.stream.high_value_quantile, 10_000).alias("high_value")).first()
    if settings.tiers_by == "probability":
        high, medium = settings.high, settings.medium
    else:  # the run's own cut-offs: its lowest high and lowest medium probability
        high = row["high"] if row["high"] is not None else 1.0
        medium = row["medium"] if row["medium"] is not None else high
    return Baseline(day, before.persist(), float(high), float(medium), row["high_value"])


def build_warnings(now: DataFrame, baseline: Baseline, config: Config, day: dt.date, version: str,
                   warned_at: dt.datetime, kinds: Column | None = None) -> DataFrame:
    """The warnings of scored users (``score.scored`` rows at the end of ``day``) against the
    day's baseline: each user's kinds (``kinds``, an array of names; by default crossing into
    the high tier and a rise over ``stream.probability_rise``), one row per (user, kind)."""
    tier = tier_column(F.col("churn_probability"), F.col("active"), baseline.high, baseline.medium)
    joined = now.withColumn("risk_tier", tier).join(baseline.scores, "user_id", "left")
    if kinds is None:
        newly_high = (F.col("risk_tier") == "high") & F.coalesce(F.col("tier_before") != "high", F.lit(True))
        rose = ((F.col("risk_tier") != "lapsed")
                & (F.col("churn_probability") - F.col("probability_before") > config.stream.probability_rise))
        kinds = F.array(F.when(newly_high, F.lit("high_tier")), F.when(rose, F.lit("probability_rise")))
    exploded = joined.select("*", F.explode(F.array_compact(kinds)).alias("kind"))
    alerts = config.alerts
    return exploded.select(
        F.sha2(F.concat_ws("|", "user_id", "kind", F.lit(day.isoformat())), 256).alias("warning_id"),
        "user_id", F.lit(day).alias("day"), "kind", F.lit(warned_at).cast("timestamp").alias("warned_at"),
        F.col("snapshot_date").alias("features_at"), "probability_before",
        F.col("churn_probability").alias("probability_after"), "risk_tier", "top_reasons", "reason_features",
        action_column(alerts.actions, alerts.default_action).alias("suggested_action"), "spend_90d",
        F.lit(version).alias("model_version"))


def silent_users(daily: DataFrame, day: dt.date, silent_days: int) -> DataFrame:
    """Users whose last active day (a ``user_daily`` row) is exactly ``silent_days`` before
    ``day``: silent since, a crossing that happens on one day only."""
    start = day - dt.timedelta(days=silent_days)
    recent = daily.where(F.col("day").between(F.lit(start), F.lit(day)))
    return (recent.groupBy("user_id").agg(F.max("day").alias("last_day"))
            .where(F.col("last_day") == F.lit(start)).select("user_id"))


def read_warnings(spark: SparkSession, config: Config, day: dt.date) -> DataFrame:
    """The warnings of ``day``, newest first."""
    return (tables.read_table(spark, config, "warnings").where(F.col("day") == F.lit(day))
            .orderBy(F.desc("warned_at"), "user_id", "kind"))


def users_near_high(spark: SparkSession, config: Config, count: int) -> list[str]:
    """Up to ``count`` users of the latest scoring run closest below the high tier (in the
    population, highest probability first): those a bad day would push over."""
    scores = tables.read_table(spark, config, "churn_scores")
    latest = scores.agg(F.max("snapshot_date")).first()[0]
    near = (scores.where((F.col("snapshot_date") == F.lit(latest)) & F.col("risk_tier").isin("medium", "low"))
            .orderBy(F.desc("churn_probability"), "user_id").limit(count))
    return [r["user_id"] for r in near.select("user_id").collect()]


class Warner:
    """The champion model and the day's baseline; each micro-batch of new events becomes
    ``user_daily`` rows, scores and ``warnings``.

    Parameters
    ----------
    spark, config
        The session, and the lakehouse, features, tiers and stream settings.
    version, bundle
        The registered model version and its bundle (``tracking.load_registered``).
    """

    def __init__(self, spark: SparkSession, config: Config, version: str, bundle: Bundle) -> None:
        self.spark, self.config, self.version, self.bundle = spark, config, version, bundle
        self.progress = Progress()
        self.fresh = False  # the query starts without a checkpoint, from the rollup's events version
        self.error: ChurnSparkError | None = None  # the one-line error a micro-batch stopped on
        self._baseline: Baseline | None = None

    def clock(self, newest_day: dt.date | None = None) -> dt.datetime:
        """Now: the machine's UTC time, or (``stream.clock: events``) the newest event's time,
        read from the partitions from ``newest_day`` on."""
        if self.config.stream.clock == "wall":
            return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        events = tables.read_table(self.spark, self.config, "events")
        if newest_day is not None:
            events = events.where(F.col("event_date") >= F.lit(newest_day))
        newest = events.agg(F.max("event_time")).first()[0]
        if newest is None:
            raise InputError(f"{self.config.table('events')}: no events to take the stream's clock from")
        return newest

    def baseline(self, day: dt.date) -> Baseline:
        """The baseline of ``day`` (read once per day)."""
        if self._baseline is None or self._baseline.day != day:
            if self._baseline is not None:
                self._baseline.scores.unpersist()
            self._baseline = read_baseline(self.spark, self.config, day)
        return self._baseline

    def process(self, batch: DataFrame, batch_id: int) -> None:
        """One micro-batch of new ``events`` rows (the ``foreachBatch`` function)."""
        try:
            self._process(batch, batch_id)
        except ChurnSparkError as err:
            self.error = err
            raise

    def _process(self, batch: DataFrame, batch_id: int) -> None:
        touched = batch.select("user_id", "event_date").distinct().persist()
        try:
            days = sorted(r["event_date"] for r in touched.select("event_date").distinct().collect())
            if not days:
                return
            now = self.clock(days[-1])
            day = now.date()
            baseline = self.baseline(day)
            users = touched.select("user_id").distinct()
            if batch_id == 0 and self.fresh:  # from the rollup's own version: bring the rollup up to date
                run_rollup(self.spark, self.config)
            else:
                refresh_daily(self.spark, self.config, users, days)
            written = self._warn(users, baseline, day)
            self.progress.batches += 1
            self.progress.warnings += written
            if day not in self.progress.days_swept:
                self.progress.warnings += self.sweep(baseline, day)
                self.progress.days_swept.append(day)
            log.info("stream batch %d: %d day(s) of events, %d new warning(s)", batch_id, len(days), written)
        finally:
            touched.unpersist()

    def sweep(self, baseline: Baseline, day: dt.date) -> int:
        """The day's ``silent`` warnings: high-value users of the baseline run whose last event
        is ``stream.silent_days`` days old, re-scored now."""
        if baseline.high_value is None:
            return 0
        daily = tables.read_table(self.spark, self.config, "user_daily")
        valuable = baseline.scores.where(F.col("spend_before") >= F.lit(baseline.high_value)).select("user_id")
        users = silent_users(daily, day, self.config.stream.silent_days).join(valuable, "user_id", "left_semi")
        return self._warn(users, baseline, day, F.array(F.lit("silent")))

    def _warn(self, users: DataFrame, baseline: Baseline, day: dt.date, kinds: Column | None = None) -> int:
        """Score ``users`` at the end of ``day`` and merge their warnings; the new ones' count."""
        as_of = day + dt.timedelta(days=1)
        features = with_model_inputs(self.spark, self.config, features_now(self.spark, self.config, users, as_of),
                                     self.bundle)
        check_compatible(self.bundle, features.schema, f"the stream's features at {as_of}")
        now_scores = scored(features, self.bundle, self.config).persist()
        try:
            self.progress.users_scored += now_scores.count()
            warned_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # the wall clock, whatever the clock
            warnings = build_warnings(now_scores, baseline, self.config, day, self.version, warned_at, kinds)
            merged = tables.merge(self.spark, self.config, "warnings", warnings, "warning_id",
                                  within=f"t.day IN ({tables.date_list([day])})")
        finally:
            now_scores.unpersist()
        return int(merged["num_inserted_rows"])

