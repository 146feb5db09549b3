"""Each contract rule and reason code, on hand-written landing rows."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from churn_spark.config import IngestConfig
from churn_spark.contract import (
    EVENT_FIELDS, RECORD, SOURCE_FILE, USER_FIELDS, VALUE_TYPES, validate_events, validate_users,
)

INGESTED = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc)


def _landing(spark: SparkSession, fields, rows: list[dict], types: list[dict] | None = None) -> DataFrame:
    """Landing rows as text; ``types``: per row, the type each value arrived as (JSON lines)."""
    names = [f.name for f in fields]
    data = [tuple(row.get(n) for n in names) + (str(row), "f.jsonl") for row in rows]
    schema = ", ".join(f"{n} string" for n in [*names, RECORD, SOURCE_FILE])
    if types is None:
        return spark.createDataFrame(data, schema)
    return spark.createDataFrame([(*row, kinds) for row, kinds in zip(data, types)],
                                 f"{schema}, {VALUE_TYPES} map<string,string>")


def _event(event_id: str, event_type: str | None = "view", **fields: str) -> dict:
    return {"event_id": event_id, "user_id": "u1", "event_time": "2026-02-01T10:00:00Z",
            "event_type": event_type, **fields}


def test_every_event_rule_and_reason(spark: SparkSession) -> None:
    rows = [
        _event("ok-view", dwell_seconds="12.5"),
        _event("ok-purchase", "purchase", price="9.99"),
        _event("ok-mixed-case", " Purchase ", price="0", quantity="2"),
        _event("ok-review", "review", rating="4.0"),
        _event("ok-offset", event_time="2026-02-01T18:00:00+08:00"),
        _event("ok-edge-of-future", event_time="2026-03-02T00:00:00Z"),
        _event("no-user", user_id=" "),
        _event("no-price", "refund"),
        _event("no-rating", "review"),
        _event("bad-time", event_time="2026-02-30T10:00:00Z"),
        _event("future", event_time="2026-03-02T00:00:01Z"),
        _event("click", "click"),
        _event("neg-price", "purchase", price="-1"),
        _event("nan-price", "purchase", price="NaN"),
        _event("zero-qty", "purchase", price="5", quantity="0"),
        _event("frac-qty", "purchase", price="5", quantity="1.5"),
        _event("six-stars", "review", rating="6"),
        _event("neg-dwell", dwell_seconds="-0.1"),
        _event("two-faults", "purchase", user_id="", price="abc"),
        {"event_id": None, "user_id": None, "event_time": None, "event_type": None},
    ]
    out = validate_events(_landing(spark, EVENT_FIELDS, rows), INGESTED).select(
        "event_id", "event_type", "event_time", "price", "quantity", "dwell_seconds", "rating", "reasons")
    t = dt.datetime(2026, 2, 1, 10)
    expected = [
        Row("ok-view", "view", t, None, None, 12.5, None, []),
        Row("ok-purchase", "purchase", t, 9.99, 1, None, None, []),
        Row("ok-mixed-case", "purchase", t, 0.0, 2, None, None, []),
        Row("ok-review", "review", t, None, None, None, 4, []),
        Row("ok-offset", "view", t, None, None, None, None, []),
        Row("ok-edge-of-future", "view", dt.datetime(2026, 3, 2), None, None, None, None, []),
        Row("no-user", "view", t, None, None, None, None, ["missing_required"]),
        Row("no-price", "refund", t, None, 1, None, None, ["missing_required"]),
        Row("no-rating", "review", t, None, None, None, None, ["missing_required"]),
        Row("bad-time", "view", None, None, None, None, None, ["bad_timestamp"]),
        Row("future", "view", dt.datetime(2026, 3, 2, 0, 0, 1), None, None, None, None, ["future_timestamp"]),
        Row("click", "click", t, None, None, None, None, ["unknown_event_type"]),
        Row("neg-price", "purchase", t, None, 1, None, None, ["bad_price"]),
        Row("nan-price", "purchase", t, None, 1, None, None, ["bad_price"]),
        Row("zero-qty", "purchase", t, 5.0, None, None, None, ["bad_quantity"]),
        Row("frac-qty", "purchase", t, 5.0, None, None, None, ["bad_quantity"]),
        Row("six-stars", "review", t, None, None, None, None, ["bad_rating"]),
        Row("neg-dwell", "view", t, None, None, None, None, ["bad_dwell"]),
        Row("two-faults", "purchase", t, None, 1, None, None, ["missing_required", "bad_price"]),
        Row(None, None, None, None, None, None, None, ["missing_required"]),
    ]
    assertDataFrameEqual(out, expected)


def test_timestamp_format_of_a_foreign_source(spark: SparkSession) -> None:
    rows = [_event("a", event_time="12/1/2010 8:26"), _event("b", event_time="2010-12-01T08:26:00Z")]
    out = validate_events(_landing(spark, EVENT_FIELDS, rows), INGESTED, timestamp_format="M/d/yyyy H:mm")
    assertDataFrameEqual(out.select("event_id", "event_time", "reasons"), [
        Row("a", dt.datetime(2010, 12, 1, 8, 26), []),
        Row("b", None, ["bad_timestamp"]),
    ])


def test_user_rules(spark: SparkSession) -> None:
    rows = [
        {"user_id": "u1", "signup_time": "2025-05-01T00:00:00Z", "gender": "female", "age": "34",
         "region": "UK", "membership_level": "gold"},
        {"user_id": "u2"},
        {"user_id": "u3", "age": "150"},
        {"user_id": "u4", "age": "-1"},
        {"user_id": "u5", "age": "thirty"},
        {"user_id": "u6", "signup_time": "yesterday"},
        {"user_id": "", "age": "0"},
    ]
    out = validate_users(_landing(spark, USER_FIELDS, rows)).drop(RECORD, SOURCE_FILE)
    assertDataFrameEqual(out, [
        Row("u1", dt.datetime(2025, 5, 1), "female", 34, "UK", "gold", []),
        Row("u2", None, None, None, None, None, []),
        Row("u3", None, None, None, None, None, ["bad_age"]),
        Row("u4", None, None, None, None, None, ["bad_age"]),
        Row("u5", None, None, None, None, None, ["bad_age"]),
        Row("u6", None, None, None, None, None, ["bad_timestamp"]),
        Row(None, None, None, 0, None, None, ["missing_required"]),
    ])


def test_bounds_come_from_the_policy(spark: SparkSession) -> None:
    rows = [
        _event("max-price", "purchase", price="1000000"),
        _event("huge-price", "purchase", price="1e308"),
        _event("over-price", "purchase", price="1000000.01"),
        _event("max-qty", "purchase", price="1", quantity="1000000"),
        _event("over-qty", "purchase", price="1", quantity="1000001"),
        _event("max-dwell", dwell_seconds="86400"),
        _event("over-dwell", dwell_seconds="86400.5"),
    ]
    out = validate_events(_landing(spark, EVENT_FIELDS, rows), INGESTED).select(
        "event_id", "price", "quantity", "dwell_seconds", "reasons")
    assertDataFrameEqual(out, [
        Row("max-price", 1e6, 1, None, []),
        Row("huge-price", None, 1, None, ["bad_price"]),
        Row("over-price", None, 1, None, ["bad_price"]),
        Row("max-qty", 1.0, 1_000_000, None, []),
        Row("over-qty", 1.0, None, None, ["bad_quantity"]),
        Row("max-dwell", None, None, 86400.0, []),
        Row("over-dwell", None, None, None, ["bad_dwell"]),
    ])
    strict = IngestConfig(max_price=100, max_quantity=5, max_dwell_seconds=60)
    out = validate_events(_landing(spark, EVENT_FIELDS, rows[:1] + rows[3:4] + rows[5:6]), INGESTED, strict)
    assertDataFrameEqual(out.select("event_id", "reasons"), [
        Row("max-price", ["bad_price"]), Row("max-qty", ["bad_quantity"]), Row("max-dwell", ["bad_dwell"])])


def test_values_of_a_type_the_column_does_not_accept(spark: SparkSession) -> None:
    rows = [
        (_event("ok-numbers", "purchase", user_id="7", price="9.99", quantity="2"),
         {"event_id": "string", "user_id": "number", "price": "number", "quantity": "number"}),
        (_event("ok-text-numbers", "purchase", price="9.99"), {"price": "string"}),
        (_event("object-user", user_id='{"id":"u5"}'), {"user_id": "object"}),
        (_event("boolean-user", user_id="true"), {"user_id": "boolean"}),
        (_event("array-category", category='["books","home"]'), {"category": "array"}),
        (_event("object-category", category='{"name":"books"}'), {"category": "object"}),
        (_event("number-time", event_time="1769940000"), {"event_time": "number"}),
        (_event("boolean-rating", "review", rating="true"), {"rating": "boolean"}),
        (_event("parquet-time"), {"event_time": "timestamp"}),
        (_event("null-value", category=None), {"category": "null"}),
        (_event("untyped", category="books"), {}),
    ]
    landing = _landing(spark, EVENT_FIELDS, [r for r, _ in rows], [t for _, t in rows])
    out = validate_events(landing, INGESTED)
    assert VALUE_TYPES not in out.columns
    assertDataFrameEqual(out.select("event_id", "user_id", "category", "reasons"), [
        Row("ok-numbers", "7", None, []),
        Row("ok-text-numbers", "u1", None, []),
        Row("object-user", '{"id":"u5"}', None, ["bad_type"]),
        Row("boolean-user", "true", None, ["bad_type"]),
        Row("array-category", "u1", '["books","home"]', ["bad_type"]),
        Row("object-category", "u1", '{"name":"books"}', ["bad_type"]),
        Row("number-time", "u1", None, ["bad_timestamp", "bad_type"]),
        Row("boolean-rating", "u1", None, ["bad_rating", "bad_type"]),
        Row("parquet-time", "u1", None, []),
        Row("null-value", "u1", None, []),
        Row("untyped", "u1", "books", []),
    ])
    users = _landing(spark, USER_FIELDS, [{"user_id": "u1", "region": "UK"}, {"user_id": "u2", "region": "[1]"}],
                     [{"user_id": "string", "region": "string"}, {"user_id": "string", "region": "array"}])
    assertDataFrameEqual(validate_users(users).select("user_id", "reasons"),
                         [Row("u1", []), Row("u2", ["bad_type"])])


def test_text_over_the_limit_and_undecodable_records(spark: SparkSession) -> None:
    policy = IngestConfig(max_text_chars=10)
    rows = [
        _event("ten-chars", "review", rating="4", review_text="0123456789"),
        _event("eleven", "review", rating="4", review_text="0123456789X"),
        _event("long-session-id", session_id="s" * 11),
        _event("bad-byte", product_id="p\ufffd1"),
    ]
    out = validate_events(_landing(spark, EVENT_FIELDS, rows), INGESTED, policy)
    assertDataFrameEqual(out.select("event_id", "reasons"), [
        Row("ten-chars", []),
        Row("eleven", ["text_too_long"]),
        Row("long-session-id", ["text_too_long"]),
        Row("bad-byte", ["bad_encoding"]),
    ])
    default = validate_events(_landing(spark, EVENT_FIELDS, [
        _event("at-limit", "review", rating="4", review_text="x" * 20_000),
        _event("past-limit", "review", rating="4", review_text="x" * 20_001)]), INGESTED)
    assertDataFrameEqual(default.select("event_id", "reasons"),
                         [Row("at-limit", []), Row("past-limit", ["text_too_long"])])
    users = _landing(spark, USER_FIELDS, [{"user_id": "u1", "region": "r" * 11}, {"user_id": "u\ufffd"}])
    assertDataFrameEqual(validate_users(users, policy).select("reasons"),
                         [Row(["text_too_long"]), Row(["bad_encoding"])])
