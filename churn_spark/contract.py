"""The event and user contract: schemas, rules, and reason codes for rejected rows.

This module owns the contract. ``validate_events`` and ``validate_users`` take landing
rows with every contract column as text (missing columns null) and return typed rows
plus a ``reasons`` array: empty for a row that keeps the contract, else the codes of every
rule it breaks, in the order of ``EVENT_REASONS`` / ``USER_REASONS``.

Besides the value rules, three rules judge how a record arrived: ``bad_type`` (a JSON or
Parquet value of a type its column does not accept, see ``ACCEPTED_TYPES``),
``text_too_long`` (a text value over ``ingest.max_text_chars``) and ``bad_encoding`` (the
record holds a byte that is not UTF-8, read as U+FFFD, or a NUL).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DataType, DateType, DoubleType, IntegerType, LongType, StringType, StructField, StructType,
    TimestampType,
)

from churn_spark.config import IngestConfig

EVENT_TYPES = ("view", "cart", "purchase", "refund", "review", "service")
PRICED_TYPES = ("purchase", "refund")

EVENT_REASONS = (
    "missing_required",
    "bad_timestamp",
    "future_timestamp",
    "unknown_event_type",
    "bad_price",
    "bad_quantity",
    "bad_rating",
    "bad_dwell",
    "bad_type",
    "text_too_long",
    "bad_encoding",
)
USER_REASONS = ("missing_required", "bad_timestamp", "bad_age", "bad_type", "text_too_long", "bad_encoding")

RECORD = "_record"  # the original landing record, as text
SOURCE_FILE = "_source_file"
VALUE_TYPES = "_value_types"  # map: column -> the type its value arrived as (JSON lines, Parquet)

# The types (as landing names them) a value of each contract type may arrive as. Numbers
# are accepted for text (numeric ids are common) and text for numbers (CSV has no other);
# a boolean, an object or an array is never a contract value. CSV values are all text.
ACCEPTED_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("string", "number"),
    "double": ("number", "string"),
    "int": ("number", "string"),
    "timestamp": ("string", "timestamp"),
}

_DEFAULT_POLICY = IngestConfig()


def _at_most(key: str) -> str:
    return f"at most `ingest.{key}` (default {getattr(_DEFAULT_POLICY, key):,.0f})"


@dataclass(frozen=True)
class ContractField:
    """One column of the contract, as documented in the README."""

    name: str
    dtype: str
    required: str
    rule: str = ""


EVENT_FIELDS = (
    ContractField("event_id", "string", "yes", "non-empty; the same id delivered twice is one event"),
    ContractField("user_id", "string", "yes", "non-empty"),
    ContractField("event_time", "timestamp", "yes", "UTC; ISO-8601 text in CSV/JSON; parseable; "
                  "not later than ingestion time + 1 day"),
    ContractField("event_type", "string", "yes", "one of " + ", ".join(EVENT_TYPES)),
    ContractField("session_id", "string", "no"),
    ContractField("product_id", "string", "no"),
    ContractField("category", "string", "no"),
    ContractField("channel", "string", "no"),
    ContractField("review_text", "string", "no"),
    ContractField("price", "double", "for purchase and refund", f">= 0; {_at_most('max_price')}"),
    ContractField("quantity", "int", "no",
                  f">= 1 where present (purchase/refund default 1); {_at_most('max_quantity')}"),
    ContractField("dwell_seconds", "double", "no",
                  f">= 0 (time on page, for views); {_at_most('max_dwell_seconds')}"),
    ContractField("rating", "int", "for review", "1..5"),
)
USER_FIELDS = (
    ContractField("user_id", "string", "yes", "non-empty"),
    ContractField("signup_time", "timestamp", "no", "parseable"),
    ContractField("gender", "string", "no"),
    ContractField("age", "int", "no", "0..120"),
    ContractField("region", "string", "no"),
    ContractField("membership_level", "string", "no"),
)


SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(), "double": DoubleType(), "int": IntegerType(), "bigint": LongType(),
    "timestamp": TimestampType(), "date": DateType(),
}


def schema_of(fields: tuple[ContractField, ...]) -> StructType:
    """The typed Spark schema of a tuple of contract fields."""
    return StructType([StructField(f.name, SPARK_TYPES[f.dtype]) for f in fields])


EVENTS_SCHEMA = schema_of(EVENT_FIELDS)
USERS_SCHEMA = schema_of(USER_FIELDS)


def validate_events(
    raw: DataFrame,
    ingested_at: dt.datetime,
    policy: IngestConfig = _DEFAULT_POLICY,
    timestamp_format: str | None = None,
) -> DataFrame:
    """Type landing events and list the contract rules each row breaks.

    Parameters
    ----------
    raw
        Every column of ``EVENT_FIELDS`` as text (null where absent), ``RECORD``, and
        optionally ``VALUE_TYPES``; any other columns are passed through.
    ingested_at
        The batch time (UTC); an event later than ``ingested_at + policy.max_future`` is
        rejected.
    policy
        The contract's configured bounds: clock skew allowance, largest price, quantity and
        dwell time, longest text.
    timestamp_format
        A Spark datetime pattern for ``event_time``; ``None`` accepts ISO-8601.

    Returns
    -------
    DataFrame
        The typed ``EVENT_FIELDS`` columns, then ``reasons`` (array of codes), then any
        other columns of ``raw`` unchanged (``VALUE_TYPES`` dropped).
    """
    text = {f.name: _clean(F.col(f.name)) for f in EVENT_FIELDS}
    event_type = F.lower(text["event_type"])
    known_type = event_type.isin(*EVENT_TYPES)
    priced = event_type.isin(*PRICED_TYPES)
    event_time = _parse_time(text["event_time"], timestamp_format)
    price, quantity = _number(text["price"]), _number(text["quantity"])
    dwell, rating = _number(text["dwell_seconds"]), _number(text["rating"])

    bad_price = text["price"].isNotNull() & ~_is_in(price, 0, policy.max_price)
    bad_quantity = text["quantity"].isNotNull() & ~_is_int_in(quantity, 1, policy.max_quantity)
    bad_rating = text["rating"].isNotNull() & ~_is_int_in(rating, 1, 5)
    bad_dwell = text["dwell_seconds"].isNotNull() & ~_is_in(dwell, 0, policy.max_dwell_seconds)
    checks = {
        "missing_required": (
            F.greatest(*[text[c].isNull() for c in ("event_id", "user_id", "event_time", "event_type")])
            | (priced & text["price"].isNull())
            | ((event_type == "review") & text["rating"].isNull())
        ),
        "bad_timestamp": text["event_time"].isNotNull() & event_time.isNull(),
        "future_timestamp": event_time > F.lit(ingested_at + policy.max_future),
        "unknown_event_type": text["event_type"].isNotNull() & ~known_type,
        "bad_price": bad_price,
        "bad_quantity": bad_quantity,
        "bad_rating": bad_rating,
        "bad_dwell": bad_dwell,
        **_arrival_checks(raw, EVENT_FIELDS, text, policy),
    }
    typed = {
        **{name: text[name] for name in text},
        "event_type": F.when(known_type, event_type).otherwise(text["event_type"]),
        "event_time": event_time,
        "price": F.when(~bad_price, price),
        "quantity": F.when(priced & text["quantity"].isNull(), 1).when(~bad_quantity, quantity.cast("int")),
        "dwell_seconds": F.when(~bad_dwell, dwell),
        "rating": F.when(~bad_rating, rating.cast("int")),
    }
    return _with_reasons(raw, EVENT_FIELDS, typed, checks, EVENT_REASONS)


def validate_users(
    raw: DataFrame, policy: IngestConfig = _DEFAULT_POLICY, timestamp_format: str | None = None
) -> DataFrame:
    """Type landing user profiles and list the rules each row breaks.

    Parameters
    ----------
    raw
        Every column of ``USER_FIELDS`` as text (null where absent), ``RECORD``, and
        optionally ``VALUE_TYPES``; any other columns are passed through.
    policy
        The contract's configured bounds (here: the longest text).
    timestamp_format
        A Spark datetime pattern for ``signup_time``; ``None`` accepts ISO-8601.

    Returns
    -------
    DataFrame
        The typed ``USER_FIELDS`` columns, ``reasons``, then the other columns of ``raw``.
    """
    text = {f.name: _clean(F.col(f.name)) for f in USER_FIELDS}
    signup_time = _parse_time(text["signup_time"], timestamp_format)
    age = _number(text["age"])
    bad_age = text["age"].isNotNull() & ~_is_int_in(age, 0, 120)
    checks = {
        "missing_required": text["user_id"].isNull(),
        "bad_timestamp": text["signup_time"].isNotNull() & signup_time.isNull(),
        "bad_age": bad_age,
        **_arrival_checks(raw, USER_FIELDS, text, policy),
    }
    typed = {**text, "signup_time": signup_time, "age": F.when(~bad_age, age.cast("int"))}
    return _with_reasons(raw, USER_FIELDS, typed, checks, USER_REASONS)


def undecodable(record: Column) -> Column:
    """True where a landing record holds bytes that are not UTF-8 text.

    Landing reads undecodable bytes as U+FFFD (the replacement character); a NUL never
    occurs in text, only in binary (or UTF-16) files.
    """
    return ~F.is_valid_utf8(record) | record.contains("\ufffd") | record.contains("\u0000")


def _arrival_checks(
    raw: DataFrame, fields: tuple[ContractField, ...], text: dict[str, Column], policy: IngestConfig
) -> dict[str, Column]:
    """The rules on how a record arrived: value types, text length, encoding."""
    too_long = [F.length(text[f.name]) > policy.max_text_chars for f in fields if f.dtype == "string"]
    return {
        "bad_type": _bad_type(raw, fields, text),
        "text_too_long": F.greatest(*too_long),
        "bad_encoding": undecodable(F.col(RECORD)),
    }


def _bad_type(raw: DataFrame, fields: tuple[ContractField, ...], text: dict[str, Column]) -> Column:
    """True where a value arrived as a type its column does not accept (see ``ACCEPTED_TYPES``)."""
    if VALUE_TYPES not in raw.columns:  # CSV, or a mapped source: every value is text
        return F.lit(False)
    arrived = F.col(VALUE_TYPES)
    wrong = [text[f.name].isNotNull() & ~F.coalesce(arrived[f.name].isin(*ACCEPTED_TYPES[f.dtype]), F.lit(True))
             for f in fields]
    return F.greatest(*wrong)


def _with_reasons(
    raw: DataFrame,
    fields: tuple[ContractField, ...],
    typed: dict[str, Column],
    checks: dict[str, Column],
    order: tuple[str, ...],
) -> DataFrame:
    codes = F.array(*[F.when(F.coalesce(checks[code], F.lit(False)), F.lit(code)) for code in order])
    others = [c for c in raw.columns if c not in typed and c != VALUE_TYPES]
    return raw.select(
        *[typed[f.name].cast(f.dtype).alias(f.name) for f in fields],
        F.array_compact(codes).alias("reasons"),
        *others,
    )


def _clean(column: Column) -> Column:
    """Trimmed text, with blank strings as null (a blank required field is missing)."""
    trimmed = F.trim(column.cast("string"))
    return F.when(trimmed != "", trimmed)


def _parse_time(text: Column, timestamp_format: str | None) -> Column:
    if timestamp_format:
        return F.try_to_timestamp(text, F.lit(timestamp_format))
    return F.try_to_timestamp(text)


def _number(text: Column) -> Column:
    return text.try_cast("double")


def _not_finite(number: Column) -> Column:
    return number.isNull() | F.isnan(number) | (F.abs(number) == float("inf"))


def _is_in(number: Column, low: float, high: float) -> Column:
    """True where ``number`` is a finite number within [low, high]; never null."""
    return F.coalesce(~_not_finite(number) & number.between(low, high), F.lit(False))


def _is_int_in(number: Column, low: int, high: int) -> Column:
    """True where ``number`` is a whole number within [low, high]; never null."""
    return _is_in(number, low, high) & F.coalesce(number == F.floor(number), F.lit(False))
