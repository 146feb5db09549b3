"""Loyalty: repeat buying and the rhythm of purchases over the whole history window, and the
summaries buy-till-you-die models read (``churn_spark.btyd``: x, t_x and the age at T)."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature, safe_div


def _purchase_days(ctx: Context) -> Column:
    """The distinct purchase days in the history (days since 1970-01-01), oldest first."""
    return F.array_sort(ctx.distinct("purchase_days", ctx.within(ctx.history_days)))


def _gaps(ctx: Context) -> Column:
    """Days between consecutive distinct purchase days in the history, oldest first."""
    days = _purchase_days(ctx)
    n = F.size(days)
    return F.when(n >= 2, F.zip_with(F.slice(days, 2, n - 1), F.slice(days, 1, n - 1), lambda a, b: a - b))


def _last_minus_first(days: Column) -> Column:
    """Days from the first to the last of sorted ``days``; null where there are none (element_at
    of an empty array fails under ANSI SQL, so it is never evaluated there)."""
    return F.when(F.size(days) >= 1, F.element_at(days, -1) - F.element_at(days, 1))


def _days_since_first(days: Column) -> Column:
    """Days from the first of sorted ``days`` to T; null where there are none."""
    return F.when(F.size(days) >= 1, F.datediff(F.col("snapshot_date"), F.lit("1970-01-01")) - F.element_at(days, 1))


def _mean(values: Column) -> Column:
    return F.aggregate(values, F.lit(0.0), lambda acc, x: acc + x) / F.size(values)


def _std(values: Column) -> Column:
    mean = _mean(values)
    return F.sqrt(F.aggregate(values, F.lit(0.0), lambda acc, x: acc + (x - mean) * (x - mean)) / F.size(values))


def features(ctx: Context) -> list[Feature]:
    h = ctx.history_days
    last_purchase = lambda: ctx.days_since_latest("last_purchase", ctx.within(h))  # noqa: E731
    return [
        Feature("repurchase_rate", "double", h, f"share of purchase lines in the {h} days before T that "
                "repeat a product bought before in that time (0: none)", 0.0,
                lambda: safe_div(
                    ctx.count_of("purchase", h)
                    - ctx.distinct_count("products_bought", ctx.within(h)),
                    ctx.count_of("purchase", h))),
        Feature("purchase_gap_mean_days", "double", h, f"mean days between purchase days in the {h} days "
                "before T (0: fewer than two)", 0.0, lambda: _mean(_gaps(ctx))),
        Feature("purchase_gap_std_days", "double", h, "standard deviation of the days between purchase days "
                f"in the {h} days before T (0: fewer than two)", 0.0, lambda: _std(_gaps(ctx))),
        Feature("overdue_ratio", "double", h, "days since the last purchase over the mean gap (0: no gap)",
                0.0, lambda: safe_div(last_purchase(), _mean(_gaps(ctx)))),
        Feature("repeat_purchase_days", "int", h, f"purchase days after the first in the {h} days before T "
                "(0: none)", 0, lambda: F.greatest(F.size(_purchase_days(ctx)) - 1, F.lit(0))),
        Feature("purchase_span_days", "double", h, f"days from the first to the last purchase day in the {h} "
                "days before T (0: fewer than two)", 0.0,
                lambda: _last_minus_first(_purchase_days(ctx))),
        Feature("first_purchase_age_days", "double", h, f"days from the first purchase day in the {h} days "
                "before T to T (0: none)", 0.0,
                lambda: _days_since_first(_purchase_days(ctx))),
    ]
