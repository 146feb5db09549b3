"""Every feature family on hand-written events with hand-computed values, and "none" rows."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from pyspark.sql import SparkSession

from churn_spark.config import ConfigError, FeaturesConfig, IngestConfig, load_config
from churn_spark.features import catalogue, check_schema, compute_features, family_of
from churn_spark.sentiment import score_text
from tests.builders import at, make_events, make_users

T = dt.date(2026, 3, 1)
SETTINGS = FeaturesConfig()
ANGRY = "Terrible quality, broke after two days."


# u1's history before T = 2026-03-01 00:00 UTC (days before T in the comments).
U1 = [
    ("u1", at("2026-02-28 12:00:00"), "view", "s1", "p1", "A", "app", None, None, 30.0, None, None),  # 0.5
    ("u1", at("2026-02-28 12:01:00"), "view", "s1", "p2", "B", "app", None, None, 10.0, None, None),
    ("u1", at("2026-02-28 12:05:00"), "cart", "s1", "p2", "B", "app", None, None, None, None, None),
    ("u1", at("2026-02-28 12:06:00"), "purchase", "s1", "p2", "B", "app", 10.0, 2, None, None, None),
    ("u1", at("2026-02-28 23:59:59"), "view", "s7", "p5", "E", "app", None, None, 5.0, None, None),  # 1 s
    ("u1", at("2026-02-20 12:00:00"), "view", "s2", "p1", "A", "web", None, None, 20.0, None, None),  # 8.5
    ("u1", at("2026-02-10 12:00:00"), "purchase", "s3", "p3", "C", "web", 5.0, 1, None, None, None),  # 18.5
    ("u1", at("2026-02-12 12:00:00"), "review", "s3", "p3", "C", "web", None, None, None, 1, ANGRY),  # 16.5
    ("u1", at("2026-02-15 12:00:00"), "refund", "s3", "p3", "C", "web", 5.0, 1, None, None, None),  # 14.5
    ("u1", at("2026-02-16 12:00:00"), "service", "s8", None, None, "web", None, None, None, None, None),  # 13.5
    ("u1", at("2026-02-26 12:00:00"), "service", "s9", None, None, "web", None, None, None, None, None),  # 2.5
    ("u1", at("2026-01-20 12:00:00"), "cart", "s4", "p4", "D", "mini_program", None, None, None, None, None),
    ("u1", at("2026-01-05 12:00:00"), "purchase", "s5", "p3", "C", "web", 5.0, 1, None, None, None),  # 54.5
    ("u1", at("2025-08-01 12:00:00"), "view", "s0", "p9", "Z", "app", None, None, 99.0, None, None),  # > 180
]
AT_T = ("u1", at("2026-03-01 00:00:00"), "purchase", "s6", "p6", "F", "app", 100.0, 1, None, None, None)
U4 = [("u4", at("2026-02-27 12:00:00"), "view", "x1", "p1", "A", "web", None, None, 12.0, None, None)]
USERS = [
    ("u1", at("2025-03-01 00:00:00"), "female", 30, "UK", "gold"),
    ("u2", at("2026-01-01 00:00:00"), "male", 61, "DE", "basic"),   # known, no events
    ("u3", at("2026-03-05 00:00:00"), "female", 20, "SG", "basic"),  # signs up after T: not known
]

EXPECTED_U1 = {
    "recency": {
        "days_since_last_view": 1 / 86_400, "view_seen": 1,
        "days_since_last_cart": 715 / 1440, "cart_seen": 1,
        "days_since_last_purchase": 714 / 1440, "purchase_seen": 1,
        "days_since_last_review": 16.5, "review_seen": 1,
        "days_since_last_service": 2.5, "service_seen": 1,
        "days_since_first_event": 211.5,  # the event 211.5 days before T, outside the 180-day history
    },
    "frequency": {
        "sessions_7d": 3, "views_7d": 3, "carts_7d": 1, "purchases_7d": 1, "active_days_7d": 2,
        "sessions_30d": 6, "views_30d": 4, "carts_30d": 1, "purchases_30d": 2, "active_days_30d": 7,
        "sessions_90d": 8, "views_90d": 4, "carts_90d": 2, "purchases_90d": 3, "active_days_90d": 9,
    },
    "monetary": {
        "spend_30d": 25.0, "items_30d": 3, "avg_order_value_30d": 12.5, "refunds_30d": 1,
        "refund_amount_30d": 5.0, "refund_share_30d": 0.2,
        "spend_90d": 30.0, "items_90d": 4, "avg_order_value_90d": 10.0, "refunds_90d": 1,
        "refund_amount_90d": 5.0, "refund_share_90d": 5 / 30,
    },
    "browsing": {
        "dwell_total_7d": 45.0, "dwell_mean_7d": 15.0, "views_per_session_7d": 1.0,
        "dwell_total_30d": 65.0, "dwell_mean_30d": 16.25, "views_per_session_30d": 4 / 6,
        "dwell_total_90d": 65.0, "dwell_mean_90d": 16.25, "views_per_session_90d": 0.5,
    },
    "funnel": {
        "cart_conversion_30d": 2.0, "cart_abandonment_30d": 0.0,
        "cart_conversion_90d": 1.5, "cart_abandonment_90d": 0.5,
    },
    "breadth": {
        "distinct_categories_30d": 4, "distinct_products_30d": 4,
        "distinct_categories_90d": 5, "distinct_products_90d": 5,
    },
    "loyalty": {
        "repurchase_rate": 1 / 3, "purchase_gap_mean_days": 27.0, "purchase_gap_std_days": 9.0,
        "overdue_ratio": (714 / 1440) / 27,
        # purchase days 01-05, 02-10, 02-28 (the purchase at T is not before T)
        "repeat_purchase_days": 2, "purchase_span_days": 54.0, "first_purchase_age_days": 55.0,
    },
    "trends": {"sessions_trend_30d": 0.5, "purchases_trend_30d": 1 / 3, "spend_trend_30d": 20 / 30},
    "reviews": {
        "reviews_90d": 1, "rating_mean_90d": 1.0, "low_rating_share_90d": 1.0,
        "sentiment_mean_90d": score_text(ANGRY),
    },
    "service": {
        "service_contacts_30d": 2, "service_unresolved_30d": 1,
        "service_contacts_90d": 2, "service_unresolved_90d": 1,
    },
    "profile": {
        "channel_share_app_90d": 5 / 13, "channel_share_web_90d": 7 / 13,
        "channel_share_mini_program_90d": 1 / 13, "channel_share_other_90d": 0.0,
        "tenure_days": 365.0, "signup_known": 1, "age_band": "25-34", "gender": "female",
        "region": "UK", "membership_level": "gold",
    },
}


@pytest.fixture(scope="module")
def rows(spark: SparkSession) -> dict[str, dict]:
    events = make_events(spark, [*U1, AT_T, *U4])
    frame = compute_features(events, make_users(spark, USERS), [T], SETTINGS)
    check_schema(frame, SETTINGS)
    return {r.user_id: r.asDict() for r in frame.collect()}


def test_catalogue_is_complete_and_families_are_covered() -> None:
    names = [f.name for f in catalogue(SETTINGS)]
    assert len(names) == len(set(names)) == 83
    assert sum(len(v) for v in EXPECTED_U1.values()) == len(names)
    for family, expected in EXPECTED_U1.items():
        for name in expected:
            feature = next(f for f in catalogue(SETTINGS) if f.name == name)
            assert family_of(feature, SETTINGS) == family


@pytest.mark.parametrize("family", sorted(EXPECTED_U1))
def test_family_values_on_hand_written_events(rows: dict[str, dict], family: str) -> None:
    expected = EXPECTED_U1[family]
    numbers = {k: v for k, v in expected.items() if not isinstance(v, str)}
    texts = {k: v for k, v in expected.items() if isinstance(v, str)}
    assert {k: rows["u1"][k] for k in numbers} == pytest.approx(numbers, rel=1e-9, abs=1e-9)
    assert {k: rows["u1"][k] for k in texts} == texts


def test_only_users_known_at_t_have_rows(rows: dict[str, dict]) -> None:
    assert sorted(rows) == ["u1", "u2", "u4"]


def test_users_without_events_get_the_none_value_of_every_feature(rows: dict[str, dict]) -> None:
    u2 = rows["u2"]
    profile = {"tenure_days": 59.0, "signup_known": 1, "age_band": "55+", "gender": "male", "region": "DE",
               "membership_level": "basic"}
    expected = {f.name: profile.get(f.name, f.none) for f in catalogue(SETTINGS)}
    assert {k: u2[k] for k in expected} == expected
    assert u2["days_since_last_purchase"] == 180.0 and u2["purchase_seen"] == 0


def test_users_without_profile_are_known_by_their_events(rows: dict[str, dict]) -> None:
    u4 = rows["u4"]
    assert (u4["gender"], u4["age_band"], u4["signup_known"]) == ("unknown", "unknown", 0)
    assert u4["tenure_days"] == pytest.approx(1.5)
    assert (u4["views_7d"], u4["dwell_total_7d"]) == (1, 12.0)


def test_tenure_counts_from_the_first_event_ever_whatever_the_history(spark: SparkSession) -> None:
    """u5: events 300 and 10 days before T (history 180); u6: only the event 10 days before T in
    the events given, and a first event 400 days before T kept as state; u7: no event before T."""
    def event(user: str, days_before: float) -> tuple:
        when = dt.datetime.combine(T, dt.time()) - dt.timedelta(days=days_before)
        return (user, when, "view", "s", "p1", "A", "web", None, None, None, None, None)

    events = make_events(spark, [event("u5", 300), event("u5", 10), event("u6", 10), event("u7", -1)])
    derived = {r.user_id: r for r in compute_features(events, None, [T], SETTINGS).collect()}
    assert {u: (r.tenure_days, r.days_since_first_event) for u, r in derived.items()} == {
        "u5": (300.0, 300.0), "u6": (10.0, 10.0)}
    kept = spark.createDataFrame([("u6", dt.datetime.combine(T, dt.time()) - dt.timedelta(days=400)),
                                  ("u7", dt.datetime.combine(T, dt.time()) + dt.timedelta(days=1))],
                                 "user_id string, first_event_time timestamp")
    stored = {r.user_id: r for r in compute_features(events.where("user_id != 'u5'"), None, [T], SETTINGS, kept)
              .collect()}
    assert {u: (r.tenure_days, r.days_since_first_event) for u, r in stored.items()} == {"u6": (400.0, 400.0)}



def test_every_windowed_family_takes_its_windows_from_configuration(spark: SparkSession) -> None:
    """A year of history with year-long windows: u1's view 211.5 days before T (outside the
    default 180-day history) now counts; families left out of family_windows keep theirs."""
    settings = FeaturesConfig(windows=(30, 365), history_days=365, family_windows={
        "monetary": (90, 365), "reviews": (365,), "profile": (365,)})
    names = [f.name for f in catalogue(settings)]
    assert {"views_365d", "spend_365d", "reviews_365d", "channel_share_app_365d", "distinct_products_30d"} <= set(
        names) and not {"views_7d", "spend_30d", "reviews_90d", "channel_share_app_90d"} & set(names)
    frame = compute_features(make_events(spark, [*U1, AT_T]), make_users(spark, USERS), [T], settings)
    check_schema(frame, settings)
    u1 = next(r.asDict() for r in frame.collect() if r.user_id == "u1")
    assert {k: u1[k] for k in ("views_365d", "dwell_total_365d", "spend_365d", "spend_90d", "reviews_365d",
                               "channel_share_app_365d", "days_since_last_view", "distinct_products_90d")} == \
        pytest.approx({"views_365d": 5, "dwell_total_365d": 164.0, "spend_365d": 30.0, "spend_90d": 30.0,
                       "reviews_365d": 1, "channel_share_app_365d": 6 / 14, "days_since_last_view": 1 / 86_400,
                       "distinct_products_90d": 5})


@pytest.mark.parametrize("setting, message", [
    ("features.family_windows.basket=[30]", "unknown family 'basket'"),
    ("features.family_windows.monetary=[30, 365]", "monetary must hold 90"),
    ("features.family_windows.funnel=[30, 30]", "family_windows.funnel must be distinct positive day counts"),
    ("features.family_windows.reviews=[365]", "features.history_days \\(180\\) must cover the longest window"),
])
def test_family_windows_are_checked(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [setting])

BOUNDS = IngestConfig()
MANY = 2_200  # purchases of the largest quantity: more items than a 32-bit int holds


@pytest.fixture(scope="module")
def extreme(spark: SparkSession) -> dict[str, dict]:
    """"big": many events at the contract's bounds; "legacy": 1e308 prices stored before the bounds."""
    before = lambda minutes: at("2026-03-01 00:00:00") - dt.timedelta(minutes=minutes)  # noqa: E731
    top = (BOUNDS.max_price, BOUNDS.max_quantity)
    big = [("big", before(k + 1), kind, f"s{k % 40}", f"p{k}", f"c{k % 30}", "app", *top, None, None, None)
           for k in range(MANY) for kind in ("purchase", "refund")]
    big += [("big", before(k + 1), "view", f"s{k % 40}", f"p{k}", "A", "web", None, None,
             BOUNDS.max_dwell_seconds, None, None) for k in range(MANY)]
    big.append(("big", before(1), "review", "s0", "p0", "A", "app", None, None, None, 5,
                "Great! " * (BOUNDS.max_text_chars // 7)))
    legacy = [("legacy", before(60 * k + 1), kind, "s1", "p1", "A", "app", 1e308, 10, None, None, None)
              for k, kind in enumerate(["purchase", "purchase", "refund"])]
    legacy += [("legacy", before(m), "view", "s1", "p1", "A", "app", None, None, 1e308, None, None) for m in (5, 6)]
    frame = compute_features(make_events(spark, big + legacy), None, [T], SETTINGS)
    return {r.user_id: r.asDict() for r in frame.collect()}


def test_features_at_the_contract_bounds_are_finite_and_fit_their_type(extreme: dict[str, dict]) -> None:
    big = extreme["big"]
    numbers = {f.name: big[f.name] for f in catalogue(SETTINGS) if f.dtype != "string"}
    assert [k for k, v in numbers.items() if not math.isfinite(v)] == []
    assert big["items_30d"] == 2**31 - 1  # MANY x 1,000,000 items, held at the int range's end
    assert big["spend_30d"] == pytest.approx(MANY * BOUNDS.max_price * BOUNDS.max_quantity, rel=1e-12)
    assert (big["refund_share_30d"], big["dwell_mean_7d"], big["purchases_7d"]) == (
        1.0, BOUNDS.max_dwell_seconds, MANY)


def test_events_stored_before_the_bounds_give_none_values_not_infinities(extreme: dict[str, dict]) -> None:
    legacy = extreme["legacy"]
    numbers = {f.name: legacy[f.name] for f in catalogue(SETTINGS) if f.dtype != "string"}
    assert [k for k, v in numbers.items() if not math.isfinite(v)] == []
    infinite = ("spend_30d", "avg_order_value_30d", "refund_amount_30d", "refund_share_30d", "spend_trend_30d",
                "dwell_total_7d", "dwell_mean_7d")
    assert {k: legacy[k] for k in infinite} == dict.fromkeys(infinite, 0.0)
    assert (legacy["purchases_7d"], legacy["items_30d"]) == (2, 20)
