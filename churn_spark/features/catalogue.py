"""How a feature is declared: name, type, window, meaning, its "none" value and its expression.

Every family module exposes ``features(ctx) -> list[Feature]`` (the same signature for all).
A feature's value is a Spark aggregate over the user's events paired with snapshot T (see
``churn_spark.labels.snapshot_rows``), built lazily, so that the catalogue can be listed
(README table, schema check) without a Spark session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

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
    """Column helpers shared by the families, over snapshot rows of events before T."""

    windows: tuple[int, ...]
    history_days: int

    @staticmethod
    def days_before() -> Column:
        """Days from the event to T (> 0: the event is before T)."""
        return F.col("days_before_t")

    def within(self, days: float) -> Column:
        """The event lies in [T - days, T)."""
        return F.col("before_t") & (self.days_before() <= days)

    def between(self, start_days: float, end_days: float) -> Column:
        """The event lies in [T - end_days, T - start_days)."""
        return F.col("before_t") & (self.days_before() > start_days) & (self.days_before() <= end_days)

    @staticmethod
    def is_type(*types: str) -> Column:
        return F.col("event_type").isin(*types)

    def count_of(self, event_type: str, days: float) -> Column:
        return F.sum(F.when(self.is_type(event_type) & self.within(days), 1).otherwise(0))

    def sum_of(self, value: Column, condition: Column) -> Column:
        return F.sum(F.when(condition, value).otherwise(0.0))

    @staticmethod
    def distinct_count(value: Column, condition: Column) -> Column:
        """Distinct non-null values where ``condition`` holds (a set per group, no Expand)."""
        return F.size(F.collect_set(F.when(condition, value)))

    def amount(self) -> Column:
        """Money of a purchase or refund line: price x quantity."""
        return F.col("price") * F.coalesce(F.col("quantity"), F.lit(1))


def safe_div(numerator: Column, denominator: Column, none: float = 0.0) -> Column:
    """numerator / denominator, or ``none`` where the denominator is 0 or null."""
    return F.when(denominator > 0, numerator / denominator).otherwise(F.lit(none))


def relative_change(recent: Column, before: Column) -> Column:
    """(recent - before) / (recent + before): -1 stopped, 0 flat or nothing, +1 new."""
    return safe_div(recent - before, recent + before)
