"""Service: contacts with customer service, and those not followed by a purchase within 7 days."""

from __future__ import annotations

from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature

WINDOWS = (30, 90)
FOLLOW_UP_DAYS = 7


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in WINDOWS:
        # Only contacts whose whole follow-up week lies before T can be judged at T.
        unresolved = lambda w=w: (ctx.is_type("service") & ctx.within(w)  # noqa: E731
                                  & (ctx.days_before() >= FOLLOW_UP_DAYS) & ~F.col("purchase_within_7d"))
        out += [
            Feature(f"service_contacts_{w}d", "int", w, f"service contacts in the {w} days before T", 0,
                    lambda w=w: ctx.count_of("service", w)),
            Feature(f"service_unresolved_{w}d", "int", w, f"service contacts in the {w} days before T with no "
                    f"purchase in the {FOLLOW_UP_DAYS} days after (contacts at least {FOLLOW_UP_DAYS} days "
                    "before T)", 0, lambda u=unresolved: F.sum(F.when(u(), 1).otherwise(0))),
        ]
    return out
