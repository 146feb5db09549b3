"""Reviews: how many, how they rate, and what their text says (sentiment in [-1, 1])."""

from __future__ import annotations

from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature, safe_div

WINDOW = 90


def features(ctx: Context) -> list[Feature]:
    w = WINDOW
    reviewed = lambda: ctx.is_type("review") & ctx.within(w)  # noqa: E731
    return [
        Feature(f"reviews_{w}d", "int", w, f"reviews written in the {w} days before T", 0,
                lambda: ctx.count_of("review", w)),
        Feature(f"rating_mean_{w}d", "double", w, f"mean star rating of the reviews in the {w} days before T "
                "(0: none)", 0.0, lambda: F.avg(F.when(reviewed(), F.col("rating")))),
        Feature(f"low_rating_share_{w}d", "double", w, f"share of the reviews in the {w} days before T rated "
                "2 stars or less (0: none)", 0.0,
                lambda: safe_div(F.sum(F.when(reviewed() & (F.col("rating") <= 2), 1).otherwise(0)),
                                 ctx.count_of("review", w))),
        Feature(f"sentiment_mean_{w}d", "double", w, f"mean sentiment of the review texts in the {w} days "
                "before T, -1 to 1 (0: none)", 0.0, lambda: F.avg(F.when(reviewed(), F.col("sentiment")))),
    ]
