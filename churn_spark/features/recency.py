"""Recency: days since the last event of each kind, capped at the history and flagged."""

from __future__ import annotations

from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature

KINDS = {"view": "page view", "cart": "add-to-cart", "purchase": "purchase",
         "review": "review", "service": "service contact"}


def features(ctx: Context) -> list[Feature]:
    out = []
    for kind, words in KINDS.items():
        out.append(Feature(
            f"days_since_last_{kind}", "double", None,
            f"days from the last {words} to T, capped at {ctx.history_days} (none in history)",
            ctx.history_days,
            lambda k=kind: F.min(F.when(ctx.is_type(k) & ctx.within(ctx.history_days), ctx.days_before()))))
        out.append(Feature(
            f"{kind}_seen", "int", None, f"1 if the user has a {words} in the {ctx.history_days} days before T",
            0, lambda k=kind: F.max(F.when(ctx.is_type(k) & ctx.within(ctx.history_days), 1))))
    out.append(Feature(
        "days_since_first_event", "double", None,
        f"days from the user's first event within the {ctx.history_days}-day history to T", 0,
        lambda: F.max(F.when(ctx.within(ctx.history_days), ctx.days_before()))))
    return out
