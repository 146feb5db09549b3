"""Frequency: sessions, views, carts, purchases and active days per window."""

from __future__ import annotations


from churn_spark.features.catalogue import Context, Feature


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in ctx.windows:
        out += [
            Feature(f"sessions_{w}d", "int", w, f"distinct sessions in the {w} days before T", 0,
                    lambda w=w: ctx.distinct_count("sessions", ctx.within(w))),
            Feature(f"views_{w}d", "int", w, f"page views in the {w} days before T", 0,
                    lambda w=w: ctx.count_of("view", w)),
            Feature(f"carts_{w}d", "int", w, f"add-to-carts in the {w} days before T", 0,
                    lambda w=w: ctx.count_of("cart", w)),
            Feature(f"purchases_{w}d", "int", w, f"purchase lines in the {w} days before T", 0,
                    lambda w=w: ctx.count_of("purchase", w)),
            Feature(f"active_days_{w}d", "int", w, f"days with any event in the {w} days before T", 0,
                    lambda w=w: ctx.distinct_count("active_days", ctx.within(w))),
        ]
    return out
