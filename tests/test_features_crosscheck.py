"""A sample of features recomputed independently with pandas on a small generated set."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from churn_spark.features import compute_features
from churn_spark.generate import GenerateSpec
from tests.builders import generated
from tests.test_features import SETTINGS

pytestmark = pytest.mark.slow  # features of a generated population, twice over (Spark and pandas)

START = dt.date(2026, 1, 1)
DATES = [START + dt.timedelta(days=70), START + dt.timedelta(days=100)]
DAY = pd.Timedelta(days=1)


def _user_features(events: pd.DataFrame, user: pd.Series, t: pd.Timestamp) -> dict[str, float]:
    """The sampled features of one user at T, straight from the definitions."""
    all_events = events
    e = events[(events.event_time < t) & (events.event_time >= t - 180 * DAY)].copy()
    e["days"] = (t - e.event_time) / DAY
    kind = lambda k, w: e[(e.event_type == k) & (e.days <= w)]  # noqa: E731
    amount = lambda f: (f.price * f.quantity.fillna(1)).sum()  # noqa: E731
    purchases = kind("purchase", 180)
    days = np.array(sorted(set(purchases.event_time.dt.normalize())), dtype="datetime64[D]").astype(int)
    gaps = np.diff(days).astype(float)
    carted = set(kind("cart", 90).session_id)
    bought = set(kind("purchase", 90).session_id)
    views7 = kind("view", 7).dwell_seconds.dropna()
    recent, before = e[e.days <= 30].session_id.nunique(), e[(e.days > 30) & (e.days <= 60)].session_id.nunique()
    reviews = kind("review", 90)
    unresolved = 0
    for s in kind("service", 90).itertuples():
        later = all_events[(all_events.event_type == "purchase") & (all_events.event_time > s.event_time)]
        if s.days >= 7 and not (later.event_time < s.event_time + 7 * DAY).any():
            unresolved += 1
    in90 = e[e.days <= 90]
    return {
        "days_since_last_purchase": purchases.days.min() if len(purchases) else 180.0,
        "purchase_seen": int(len(purchases) > 0),
        "sessions_30d": e[e.days <= 30].session_id.nunique(),
        "views_7d": len(kind("view", 7)),
        "purchases_90d": len(kind("purchase", 90)),
        "active_days_30d": e[e.days <= 30].event_time.dt.date.nunique(),
        "spend_90d": amount(kind("purchase", 90)),
        "items_30d": kind("purchase", 30).quantity.fillna(1).sum(),
        "refund_amount_90d": amount(kind("refund", 90)),
        "dwell_total_30d": kind("view", 30).dwell_seconds.sum(),
        "dwell_mean_7d": views7.mean() if len(views7) else 0.0,
        "cart_abandonment_90d": len(carted - bought) / len(carted) if carted else 0.0,
        "distinct_categories_30d":
            e[(e.days <= 30) & e.event_type.isin(["view", "cart", "purchase"])].category.nunique(),
        "repurchase_rate":
            (len(purchases) - purchases.product_id.nunique()) / len(purchases) if len(purchases) else 0.0,
        "purchase_gap_mean_days": gaps.mean() if len(gaps) else 0.0,
        "purchase_gap_std_days": gaps.std() if len(gaps) else 0.0,
        "sessions_trend_30d": (recent - before) / (recent + before) if recent + before else 0.0,
        "reviews_90d": len(reviews),
        "low_rating_share_90d": (reviews.rating <= 2).mean() if len(reviews) else 0.0,
        "service_unresolved_90d": unresolved,
        "channel_share_app_90d": (in90.channel == "app").mean() if len(in90) else 0.0,
        "tenure_days": (t - user.signup_time) / DAY if pd.notna(user.signup_time) else e.days.max(),
    }


@pytest.fixture(scope="module")
def computed(spark: SparkSession) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    events, users = generated(spark, GenerateSpec(users=150, days=120, start=START, seed=5))
    features = compute_features(events, users, DATES, SETTINGS).toPandas()
    return events.toPandas(), users.toPandas(), features


def test_sampled_features_equal_an_independent_pandas_computation(computed) -> None:
    events, users, features = computed
    profiles = users.set_index("user_id")
    mismatches, compared = [], 0
    for row in features.itertuples():
        t = pd.Timestamp(row.snapshot_date)
        user = profiles.loc[row.user_id] if row.user_id in profiles.index else pd.Series({"signup_time": pd.NaT})
        expected = _user_features(events[events.user_id == row.user_id], user, t)
        for name, value in expected.items():
            compared += 1
            if not np.isclose(getattr(row, name), value, rtol=1e-9, atol=1e-9):
                mismatches.append((row.user_id, row.snapshot_date, name, getattr(row, name), value))
    assert len(features) > 200 and compared == 22 * len(features)
    assert mismatches == []


def test_users_known_at_t_equal_pandas(computed) -> None:
    events, users, features = computed
    for day in DATES:
        t = pd.Timestamp(day)
        active = set(events[(events.event_time < t) & (events.event_time >= t - 180 * DAY)].user_id)
        signed = set(users[users.signup_time < t].user_id)
        assert set(features[features.snapshot_date == day].user_id) == active | signed
