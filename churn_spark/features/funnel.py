"""Funnel: how carts turn into purchases."""

from __future__ import annotations

from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature, safe_div


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in ctx.windows_of("funnel"):
        def sessions_with(kind: str, w: int = w):
            return ctx.distinct(f"{kind}_sessions", ctx.within(w))

        out += [
            Feature(f"cart_conversion_{w}d", "double", w,
                    f"purchase lines per add-to-cart in the {w} days before T (0: no carts)", 0.0,
                    lambda w=w: safe_div(ctx.count_of("purchase", w), ctx.count_of("cart", w))),
            Feature(f"cart_abandonment_{w}d", "double", w,
                    f"share of sessions with a cart but no purchase in the {w} days before T (0: no carts)",
                    0.0, lambda s=sessions_with: safe_div(
                        F.size(F.array_except(s("cart"), s("purchase"))), F.size(s("cart")))),
        ]
    return out
