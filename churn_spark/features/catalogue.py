"""How a feature is declared: name, type, window, meaning, its "none" value and its expression.

Every family module exposes ``features(ctx) -> list[Feature]`` (the same signature for all).
A feature's value is a Spark aggregate over the user's events paired with snapshot T (see
``churn_spark.labels.snapshot_rows``) or, from the same declaration, over their ``user_daily``
partials (``Context.daily``); built lazily, so that the catalogue can be listed (README table,
schema check) without a Spark session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from churn_spark.features.partials import PARTIALS, day_start_column
from churn_spark.labels import days_before_t


@dataclass(frozen=True)
class Feature:
    """One feature of the catalogue."""

    name: str
    dtype: str  # int | double | string
    window: int | None  # days before T; None where no window applies
    meaning: str
    none: float | int | str  # the value for a user with no events to compute it from
    value: Callable[[], Column]  # aggregate over snapshot rows (stage "events") or row expression
    stage: str = "events"  # "events": aggregated per (user, T); "profile": a row expression after the users join
    group: str | None = None  # features that say the same thing share a group (see ``reason_group``)
    reason: bool = True  # False: never given as a reason (a flag saying which data is present)

    @property
    def reason_group(self) -> str:
        """Features of one group say the same thing, and a user's reasons name at most one of them.

        ``group`` where declared (a recency and its seen flag; tenure and days since the first
        event); otherwise a feature's window variants form its group (``spend_30d``, ``spend_90d``).
        """
        if self.group:
            return self.group
        return self.name.removesuffix(f"_{self.window}d") if self.window else self.name

    def finished(self, value: Column) -> Column:
        """``value`` as the feature's output column: "none" where it is null, typed, named."""
        return F.coalesce(value, F.lit(self.none)).cast(self.dtype).alias(self.name)


@dataclass(frozen=True)
class Context:
    """Column helpers shared by the families, over snapshot rows before T.

    ``daily`` False: the rows are events paired with T (``labels.snapshot_rows``), the
    reference path. ``daily`` True: the rows are ``user_daily`` rows paired with T
    (``labels.snapshot_days``). A feature is written once with these helpers, naming the
    partials of ``features.partials`` it aggregates, and means the same on both.
    """

    windows: tuple[int, ...]
    history_days: int
    daily: bool = False
    family_windows: tuple[tuple[str, tuple[int, ...]], ...] = ()

    def windows_of(self, family: str) -> tuple[int, ...]:
        """The windows configured for ``family`` (``features.family_windows``), else ``windows``."""
        return dict(self.family_windows).get(family, self.windows)

    @staticmethod
    def days_before() -> Column:
        """Days from the event (or day) to T (> 0: before T)."""
        return F.col("days_before_t")

    def within(self, days: float) -> Column:
        """The event lies in [T - days, T)."""
        return F.col("before_t") & (self.days_before() <= days)

    def between(self, start_days: float, end_days: float) -> Column:
        """The event lies in [T - end_days, T - start_days)."""
        return F.col("before_t") & (self.days_before() > start_days) & (self.days_before() <= end_days)

    def _value(self, partial: str) -> Column:
        return F.col(partial) if self.daily else PARTIALS[partial].measure()

    def total(self, partial: str, where: Column) -> Column:
        """A "sum" partial summed over the rows where ``where`` holds (0 where there are none)."""
        return _sum(self._value(partial), where, PARTIALS[partial].dtype)

    def mean(self, sum_partial: str, count_partial: str, where: Column) -> Column:
        """One "sum" partial over another (a sum over the count of its values), null where none."""
        count = self.total(count_partial, where)
        return F.when(count > 0, self.total(sum_partial, where) / count)

    def count_of(self, kind: str, days: float) -> Column:
        """Events of type ``kind`` in the ``days`` before T."""
        return self.total(f"{kind}s", self.within(days))

    def distinct(self, partial: str, where: Column) -> Column:
        """The distinct values of a "set" partial over the rows where ``where`` holds (an array)."""
        if self.daily:
            return F.array_distinct(F.flatten(F.collect_list(F.when(where, F.col(partial)))))
        return F.collect_set(F.when(where, self._value(partial)))

    def distinct_count(self, partial: str, where: Column) -> Column:
        return F.size(self.distinct(partial, where))

    def days_since_latest(self, partial: str, where: Column) -> Column:
        """Days from the latest time of a "latest" partial over the rows where ``where`` holds to T."""
        return days_before_t(F.max(F.when(where, self._value(partial))), F.col("snapshot_date"))

    def total_judged(self, partial: str, where: Column, days: int) -> Column:
        """``total`` over the events at least ``days`` before T (``days_before_t >= days``).

        On day rows this bound is not a day boundary: the day ``days`` before T counts only its
        events at midnight, kept by partials that declare ``at_day_start``.
        """
        if not self.daily:
            return self.total(partial, where & (self.days_before() >= days))
        whole_days = self.total(partial, where & (self.days_before() > days))
        at_midnight = _sum(F.col(day_start_column(partial)), where & (self.days_before() == days),
                           PARTIALS[partial].dtype)
        return whole_days + at_midnight


def _sum(value: Column, where: Column, dtype: str) -> Column:
    return F.coalesce(F.sum(F.when(where, value)), F.lit(0).cast(dtype))


def safe_div(numerator: Column, denominator: Column, none: float = 0.0) -> Column:
    """numerator / denominator, or ``none`` where the denominator is 0 or null."""
    return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(none))


def relative_change(recent: Column, before: Column) -> Column:
    """(recent - before) / (recent + before): -1 stopped, 0 flat or nothing, +1 new."""
    return safe_div(recent - before, recent + before)
