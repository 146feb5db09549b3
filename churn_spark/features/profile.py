"""Tenure and profile: time since signup, demographics, membership, and the channel mix."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from churn_spark.features.catalogue import Context, Feature, safe_div
from churn_spark.features.partials import CHANNELS
from churn_spark.features.recency import FIRST_EVENT_TIME
from churn_spark.labels import days_before_t

AGE_BANDS = ((25, "<25"), (35, "25-34"), (45, "35-44"), (55, "45-54"))


def _age_band() -> Column:
    age = F.col("age")
    band = F.when(age.isNull(), None)
    for upper, label in AGE_BANDS:
        band = band.when(age < upper, label)
    return band.otherwise("55+")


def _channel_shares(ctx: Context, w: int) -> list[Feature]:
    total = lambda: ctx.total("events", ctx.within(w))  # noqa: E731
    out = [
        Feature(f"channel_share_{c}_{w}d", "double", w,
                f"share of events through {c.replace('_', ' ')} in the {w} days before T",
                0.0, lambda c=c: safe_div(ctx.total(f"channel_{c}", ctx.within(w)), total()))
        for c in CHANNELS
    ]
    out.append(Feature(
        f"channel_share_other_{w}d", "double", w,
        f"share of events through other or unknown channels in the {w} days before T", 0.0,
        lambda: safe_div(ctx.total("channel_other", ctx.within(w)), total())))
    return out


def features(ctx: Context) -> list[Feature]:
    out = [feature for w in ctx.windows_of("profile") for feature in _channel_shares(ctx, w)]
    profile = [
        Feature("tenure_days", "double", None,
                "days since signup (unknown signup: since the user's first event ever)", 0.0,
                lambda: F.coalesce((F.unix_timestamp(F.col("snapshot_date").cast("timestamp"))
                                    - F.unix_timestamp("signup_time")) / 86_400,
                                   days_before_t(F.col(FIRST_EVENT_TIME), F.col("snapshot_date"))),
                stage="profile", group="tenure"),
        Feature("signup_known", "int", None, "1 if the signup time is known", 0,
                lambda: F.when(F.col("signup_time").isNotNull(), 1), stage="profile", reason=False),
        Feature("age_band", "string", None, "age band: <25, 25-34, 35-44, 45-54, 55+", "unknown",
                _age_band, stage="profile"),
    ]
    profile += [Feature(name, "string", None, f"{name.replace('_', ' ')} from the user's profile", "unknown",
                        lambda name=name: F.col(name), stage="profile")
                for name in ("gender", "region", "membership_level")]
    return out + profile
