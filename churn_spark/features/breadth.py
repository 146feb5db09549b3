"""Breadth: how many categories and products the user looks at or buys."""

from __future__ import annotations

from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature

WINDOWS = (30, 90)


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in WINDOWS:
        def shopping(w: int = w):
            return ctx.is_type("view", "cart", "purchase") & ctx.within(w)

        out += [
            Feature(f"distinct_categories_{w}d", "int", w, f"categories viewed, carted or bought in the {w} "
                    "days before T", 0, lambda s=shopping: ctx.distinct_count(F.col("category"), s())),
            Feature(f"distinct_products_{w}d", "int", w, f"products viewed, carted or bought in the {w} "
                    "days before T", 0, lambda s=shopping: ctx.distinct_count(F.col("product_id"), s())),
        ]
    return out
