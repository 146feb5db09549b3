"""Reviews: how many, how they rate, and what their text says (sentiment in [-1, 1])."""

from __future__ import annotations


from churn_spark.features.catalogue import Context, Feature, safe_div

def features(ctx: Context) -> list[Feature]:
    out = []
    for w in ctx.windows_of("reviews"):
        out += [
            Feature(f"reviews_{w}d", "int", w, f"reviews written in the {w} days before T", 0,
                    lambda w=w: ctx.count_of("review", w)),
            Feature(f"rating_mean_{w}d", "double", w, f"mean star rating of the reviews in the {w} days before T "
                    "(0: none)", 0.0, lambda w=w: ctx.mean("rating_sum", "rating_n", ctx.within(w))),
            Feature(f"low_rating_share_{w}d", "double", w, f"share of the reviews in the {w} days before T rated "
                    "2 stars or less (0: none)", 0.0,
                    lambda w=w: safe_div(ctx.total("low_ratings", ctx.within(w)), ctx.count_of("review", w))),
            Feature(f"sentiment_mean_{w}d", "double", w, f"mean sentiment of the review texts in the {w} days "
                    "before T, -1 to 1 (0: none)", 0.0,
                    lambda w=w: ctx.mean("sentiment_sum", "sentiment_n", ctx.within(w))),
        ]
    return out
