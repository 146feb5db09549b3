"""Trends: the last 30 days against the 30 before, as a relative change in [-1, 1]."""

from __future__ import annotations


from churn_spark.features.catalogue import Context, Feature, relative_change


def features(ctx: Context) -> list[Feature]:
    recent, before = (lambda: ctx.within(30)), (lambda: ctx.between(30, 60))
    sessions = lambda when: ctx.distinct_count("sessions", when())  # noqa: E731
    purchases = lambda when: ctx.total("purchases", when())  # noqa: E731
    spend = lambda when: ctx.total("spend", when())  # noqa: E731
    meaning = "{what}: (last 30 days - the 30 before) / (their sum); -1 stopped, 0 flat or none, +1 new"
    return [
        Feature(f"{name}_trend_30d", "double", 60, meaning.format(what=name), 0.0,
                lambda count=count: relative_change(count(recent), count(before)))
        for name, count in (("sessions", sessions), ("purchases", purchases), ("spend", spend))
    ]
