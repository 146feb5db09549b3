"""The per-user, per-day partial aggregates every feature is folded from: the ``user_daily`` table.

A partial is one un-windowed aggregate of one user's events of one UTC day: a sum (counts,
money, dwell), a latest time, or a set of distinct values (sessions, products, days). A
feature's window aggregate is the same kind of aggregate over the partials of the days in
its window: sums add, latest times take the latest, sets unite. Snapshot T is a UTC midnight
and every window is whole days before it, so the fold is exact (see ``Context``).

A feature names the partials it needs (``ctx.total("purchases", ...)``) and is thereby
computed two ways from one declaration: over raw events (each event's ``measure``, the
reference path) or over ``user_daily`` rows (the stored partials, the daily path).

One condition does not end on a day boundary: a service contact is judged at T only if its
whole follow-up week lies before T (``days_before_t >= 7``), which on the day exactly seven
days before T holds only for a contact at midnight. Such a partial declares
``at_day_start`` and keeps a second column counting the events at the day's first instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import Column
from pyspark.sql import functions as F

from churn_spark.labels import event_day, snapshot_start

# Event types with a recency and a count of their own (the contract's types but refund,
# which is counted and summed below).
KINDS = ("view", "cart", "purchase", "review", "service")
CHANNELS = ("app", "web", "mini_program")
SHOPPING = ("view", "cart", "purchase")


@dataclass(frozen=True)
class Partial:
    """One column of ``user_daily``: what one event contributes, and how contributions combine."""

    name: str
    kind: str  # "sum" | "latest" | "set"
    dtype: str  # the stored type: bigint | double | timestamp | array<string> | array<int>
    measure: Callable[[], Column]  # one event's contribution; null where the event does not count
    meaning: str
    at_day_start: bool = False  # also keep ``<name>_at_day_start``: the events at the day's first instant

    def daily(self) -> list[Column]:
        """This partial's aggregate(s) over one user's events of one day, as ``user_daily`` stores them."""
        value = self.measure()
        out = [_aggregate(self.kind, self.dtype, value).alias(self.name)]
        if self.at_day_start:
            at_start = F.when(F.col("event_time") == snapshot_start(event_day(F.col("event_time"))), value)
            out.append(_aggregate(self.kind, self.dtype, at_start).alias(day_start_column(self.name)))
        return out

    def columns(self) -> list[tuple[str, str]]:
        """(name, type) of the stored column(s)."""
        names = [self.name, day_start_column(self.name)] if self.at_day_start else [self.name]
        return [(name, self.dtype) for name in names]


def day_start_column(name: str) -> str:
    return f"{name}_at_day_start"


def _aggregate(kind: str, dtype: str, value: Column) -> Column:
    if kind == "sum":
        return F.coalesce(F.sum(value), F.lit(0)).cast(dtype)
    if kind == "latest":
        return F.max(value)
    if kind == "set":
        return F.collect_set(value)
    raise ValueError(f"partial: unknown kind {kind!r}")


def _is(*types: str) -> Column:
    return F.col("event_type").isin(*types)


def _one(condition: Column) -> Column:
    return F.when(condition, F.lit(1))


def amount() -> Column:
    """Money of a purchase or refund line: price x quantity."""
    return F.col("price") * F.coalesce(F.col("quantity"), F.lit(1))


def epoch_day() -> Column:
    """The event's UTC day as days since 1970-01-01."""
    return F.datediff(event_day(F.col("event_time")), F.lit("1970-01-01"))


def _declare() -> dict[str, Partial]:
    partials = [
        Partial("events", "sum", "bigint", lambda: F.lit(1), "events of any type"),
        *[Partial(f"{kind}s", "sum", "bigint", lambda k=kind: _one(_is(k)), f"{kind} events")
          for kind in (*KINDS, "refund")],
        *[Partial(f"last_{kind}", "latest", "timestamp", lambda k=kind: F.when(_is(k), F.col("event_time")),
                  f"time of the last {kind} event") for kind in KINDS],
        Partial("spend", "sum", "double", lambda: F.when(_is("purchase"), amount()), "money of purchase lines"),
        Partial("items", "sum", "bigint", lambda: F.when(_is("purchase"), F.coalesce(F.col("quantity"), F.lit(1))),
                "items bought"),
        Partial("refund_amount", "sum", "double", lambda: F.when(_is("refund"), amount()), "money refunded"),
        Partial("dwell_sum", "sum", "double", lambda: F.when(_is("view"), F.col("dwell_seconds")),
                "seconds on product pages"),
        Partial("dwell_n", "sum", "bigint", lambda: _one(_is("view") & F.col("dwell_seconds").isNotNull()),
                "page views with a dwell time"),
        Partial("rating_sum", "sum", "bigint", lambda: F.when(_is("review"), F.col("rating")), "star ratings"),
        Partial("rating_n", "sum", "bigint", lambda: _one(_is("review") & F.col("rating").isNotNull()),
                "reviews with a rating"),
        Partial("low_ratings", "sum", "bigint", lambda: _one(_is("review") & (F.col("rating") <= 2)),
                "reviews of 2 stars or less"),
        Partial("sentiment_sum", "sum", "double", lambda: F.when(_is("review"), F.col("sentiment")),
                "review sentiment"),
        Partial("sentiment_n", "sum", "bigint", lambda: _one(_is("review") & F.col("sentiment").isNotNull()),
                "reviews with a sentiment"),
        Partial("service_unresolved", "sum", "bigint",
                lambda: _one(_is("service") & ~F.col("purchase_within_7d")),
                "service contacts with no purchase in the week after", at_day_start=True),
        *[Partial(f"channel_{c}", "sum", "bigint", lambda c=c: _one(F.col("channel") == c), f"events through {c}")
          for c in CHANNELS],
        Partial("channel_other", "sum", "bigint",
                lambda: _one(~F.coalesce(F.col("channel").isin(*CHANNELS), F.lit(False))),
                "events through other or unknown channels"),
        Partial("sessions", "set", "array<string>", lambda: F.col("session_id"), "sessions"),
        Partial("cart_sessions", "set", "array<string>", lambda: F.when(_is("cart"), F.col("session_id")),
                "sessions with an add-to-cart"),
        Partial("purchase_sessions", "set", "array<string>", lambda: F.when(_is("purchase"), F.col("session_id")),
                "sessions with a purchase"),
        Partial("products_shopped", "set", "array<string>", lambda: F.when(_is(*SHOPPING), F.col("product_id")),
                "products viewed, carted or bought"),
        Partial("categories_shopped", "set", "array<string>", lambda: F.when(_is(*SHOPPING), F.col("category")),
                "categories viewed, carted or bought"),
        Partial("products_bought", "set", "array<string>", lambda: F.when(_is("purchase"), F.col("product_id")),
                "products bought"),
        Partial("active_days", "set", "array<int>", epoch_day, "the day, as days since 1970-01-01"),
        Partial("purchase_days", "set", "array<int>", lambda: F.when(_is("purchase"), epoch_day()),
                "the day if it has a purchase, as days since 1970-01-01"),
    ]
    return {p.name: p for p in partials}


PARTIALS: dict[str, Partial] = _declare()
KEYS = ("user_id", "day")


def schema_columns() -> list[tuple[str, str]]:
    """The ``user_daily`` columns: the keys, then every partial."""
    return [("user_id", "string"), ("day", "date"), *[c for p in PARTIALS.values() for c in p.columns()]]
