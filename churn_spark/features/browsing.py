"""Browsing: time on page and views per session (the "browse duration" of the design)."""

from __future__ import annotations


from churn_spark.features.catalogue import Context, Feature, safe_div


def features(ctx: Context) -> list[Feature]:
    out = []
    for w in ctx.windows:
        out += [
            Feature(f"dwell_total_{w}d", "double", w, f"seconds on product pages in the {w} days before T",
                    0.0, lambda w=w: ctx.total("dwell_sum", ctx.within(w))),
            Feature(f"dwell_mean_{w}d", "double", w, f"mean seconds per timed page view in the {w} days "
                    "before T (0: none)", 0.0,
                    lambda w=w: ctx.mean("dwell_sum", "dwell_n", ctx.within(w))),
            Feature(f"views_per_session_{w}d", "double", w, f"page views per session in the {w} days "
                    "before T (0: none)", 0.0,
                    lambda w=w: safe_div(ctx.count_of("view", w),
                                         ctx.distinct_count("sessions", ctx.within(w)))),
        ]
    return out
