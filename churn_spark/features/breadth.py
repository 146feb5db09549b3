"""Breadth: how many categories and products the user looks at or buys."""

from __future__ import annotations


from churn_spark.features.catalogue import Context, Feature


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in ctx.windows_of("breadth"):
        out += [
            Feature(f"distinct_categories_{w}d", "int", w, f"categories viewed, carted or bought in the {w} "
                    "days before T", 0, lambda w=w: ctx.distinct_count("categories_shopped", ctx.within(w))),
            Feature(f"distinct_products_{w}d", "int", w, f"products viewed, carted or bought in the {w} "
                    "days before T", 0, lambda w=w: ctx.distinct_count("products_shopped", ctx.within(w))),
        ]
    return out
