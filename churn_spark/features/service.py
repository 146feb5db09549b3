"""Service: contacts with customer service, and those not followed by a purchase within 7 days."""

from __future__ import annotations


from churn_spark.features.catalogue import Context, Feature

FOLLOW_UP_DAYS = 7


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in ctx.windows_of("service"):
        # Only contacts whose whole follow-up week lies before T can be judged at T.
        unresolved = lambda w=w: ctx.total_judged("service_unresolved", ctx.within(w), FOLLOW_UP_DAYS)  # noqa: E731
        out += [
            Feature(f"service_contacts_{w}d", "int", w, f"service contacts in the {w} days before T", 0,
                    lambda w=w: ctx.count_of("service", w)),
            Feature(f"service_unresolved_{w}d", "int", w, f"service contacts in the {w} days before T with no "
                    f"purchase in the {FOLLOW_UP_DAYS} days after (contacts at least {FOLLOW_UP_DAYS} days "
                    "before T)", 0, unresolved),
        ]
    return out
