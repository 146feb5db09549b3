"""Monetary: spend, items, order value, refunds."""

from __future__ import annotations


from churn_spark.features.catalogue import Context, Feature, safe_div


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in ctx.windows_of("monetary"):
        def spend(w: int = w):
            return ctx.total("spend", ctx.within(w))

        def refunded(w: int = w):
            return ctx.total("refund_amount", ctx.within(w))

        out += [
            Feature(f"spend_{w}d", "double", w, f"money spent (price x quantity) in the {w} days before T",
                    0.0, spend),
            Feature(f"items_{w}d", "int", w, f"items bought in the {w} days before T", 0,
                    lambda w=w: ctx.total("items", ctx.within(w))),
            Feature(f"avg_order_value_{w}d", "double", w,
                    f"spend per purchase line in the {w} days before T (0: none)", 0.0,
                    lambda w=w, spend=spend: safe_div(spend(), ctx.count_of("purchase", w))),
            Feature(f"refunds_{w}d", "int", w, f"refunds in the {w} days before T", 0,
                    lambda w=w: ctx.count_of("refund", w)),
            Feature(f"refund_amount_{w}d", "double", w, f"money refunded in the {w} days before T", 0.0,
                    refunded),
            Feature(f"refund_share_{w}d", "double", w,
                    f"money refunded over money spent in the {w} days before T (0: no spend)", 0.0,
                    lambda spend=spend, refunded=refunded: safe_div(refunded(), spend())),
        ]
    return out
