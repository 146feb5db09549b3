"""Ingestion into real Delta tables: quarantine, dedup, idempotence, refusals."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from churn_spark import storage
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.ingest import ingest
from churn_spark.tables import read_table, table_exists
from tests.builders import write_jsonl

EVENTS = [
    {"event_id": "e1", "user_id": "u1", "event_time": "2026-02-01T10:00:00Z", "event_type": "view",
     "session_id": "s1", "dwell_seconds": 12.5},
    {"event_id": "e2", "user_id": "u1", "event_time": "2026-02-01T10:05:00Z", "event_type": "purchase",
     "session_id": "s1", "product_id": "p1", "price": 10.0, "quantity": 2},
    {"event_id": "e3", "user_id": "u2", "event_time": "2026-02-02T23:59:59Z", "event_type": "click"},
    {"event_id": "e4", "user_id": "u2", "event_time": "2026-02-03T00:00:00+01:00", "event_type": "review",
     "rating": 2, "review_text": "slow delivery", "coupon": "X1"},
]
USERS = [
    {"user_id": "u1", "signup_time": "2025-06-01T00:00:00Z", "gender": "female", "age": 30,
     "region": "UK", "membership_level": "gold"},
    {"user_id": "u2", "age": 200},
]
EVENT_COLUMNS = ["event_id", "user_id", "event_time", "event_type", "price", "quantity",
                 "dwell_seconds", "rating", "review_text", "event_date", "source"]
STORED = [
    Row("e1", "u1", dt.datetime(2026, 2, 1, 10), "view", None, None, 12.5, None, None, dt.date(2026, 2, 1), "contract"),
    Row("e2", "u1", dt.datetime(2026, 2, 1, 10, 5), "purchase", 10.0, 2, None, None, None, dt.date(2026, 2, 1),
        "contract"),
    Row("e4", "u2", dt.datetime(2026, 2, 2, 23), "review", None, None, None, 2, "slow delivery", dt.date(2026, 2, 2),
        "contract"),
]


def _csv(path: Path, rows: list[dict]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    names = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def _snapshot(spark: SparkSession, config: Config,
              names: tuple[str, ...] = ("events", "users", "quarantine")) -> dict[str, list[Row]]:
    return {name: sorted(read_table(spark, config, name).collect(), key=str) for name in names}


def test_jsonl_batch_lands_rows_quarantine_and_log(spark: SparkSession, config: Config, tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "in" / "events.jsonl", [*EVENTS, EVENTS[1]], ("this is not json",))
    users = write_jsonl(tmp_path / "in" / "users.jsonl", USERS)

    ingest(spark, config, events, users)

    assertDataFrameEqual(read_table(spark, config, "events").select(EVENT_COLUMNS), STORED)
    assertDataFrameEqual(read_table(spark, config, "users").select("user_id", "age", "region"),
                         [Row("u1", 30, "UK")])
    quarantine = read_table(spark, config, "quarantine").select("dataset", "record", "reasons")
    assertDataFrameEqual(quarantine, [
        Row("events", json.dumps(EVENTS[2]), ["unknown_event_type"]),
        Row("events", "this is not json", ["missing_required"]),
        Row("users", json.dumps(USERS[1]), ["bad_age"]),
    ])
    assert {r.source_file for r in read_table(spark, config, "quarantine").collect()} == {
        f"file:{tmp_path}/in/events.jsonl", f"file:{tmp_path}/in/users.jsonl"}
    log = read_table(spark, config, "ingest_log").select(
        "dataset", "rows_read", "rows_written", "duplicates_skipped", "quarantined",
        "quarantined_by_reason", "extra_columns")
    assertDataFrameEqual(log, [
        Row("events", 6, 3, 1, 2, {"unknown_event_type": 1, "missing_required": 1}, ["coupon"]),
        Row("users", 2, 1, 0, 1, {"bad_age": 1}, []),
    ])


@pytest.mark.slow
def test_rerun_changes_nothing_and_redelivered_events_are_stored_once(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    events = write_jsonl(tmp_path / "in" / "events.jsonl", [*EVENTS, EVENTS[1]], ("this is not json",))
    users = write_jsonl(tmp_path / "in" / "users.jsonl", USERS)
    ingest(spark, config, events, users)
    first = _snapshot(spark, config)

    reports = ingest(spark, config, events, users, reingest=True)  # every file read again

    assert _snapshot(spark, config) == first
    assert [(r.rows_written, r.duplicates_skipped, r.quarantined) for r in reports] == [(0, 4, 2), (0, 1, 1)]
    later = {"event_id": "e5", "user_id": "u1", "event_time": "2026-02-04T08:00:00Z", "event_type": "cart"}
    ingest(spark, config, write_jsonl(tmp_path / "in2" / "events.jsonl", [EVENTS[0], later]))
    stored = read_table(spark, config, "events").select("event_id").collect()
    assert sorted(r.event_id for r in stored) == ["e1", "e2", "e4", "e5"]


@pytest.mark.slow
def test_files_ingested_before_are_skipped_before_they_are_parsed(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    """Same URI, size and checksum in ingest_log: not read again. A new file, or a file whose
    content changed, is read; the log records each file read."""
    def logged(path: str) -> Row:
        data = Path(path).read_bytes()
        return Row(path=f"file:{path}", size=len(data), checksum=hashlib.sha256(data).hexdigest())

    day1 = write_jsonl(tmp_path / "in" / "day1.jsonl", EVENTS[:2])
    first_day1 = logged(day1)
    ingest(spark, config, str(tmp_path / "in"))
    first = _snapshot(spark, config, ("events", "first_events"))

    (again,) = ingest(spark, config, str(tmp_path / "in"))
    assert (again.rows_read, again.files, again.files_skipped) == (0, [], 1)
    assert _snapshot(spark, config, ("events", "first_events")) == first
    assert again.summary().endswith("; 1 file(s) ingested before, skipped")

    day2 = write_jsonl(tmp_path / "in" / "day2.jsonl", EVENTS[2:])
    (grown,) = ingest(spark, config, str(tmp_path / "in"))
    assert (grown.rows_read, grown.rows_written, grown.files_skipped) == (2, 1, 1)  # e3 is rejected

    write_jsonl(tmp_path / "in" / "day1.jsonl", [EVENTS[0]])  # corrected: rewritten, smaller
    (changed,) = ingest(spark, config, str(tmp_path / "in"))
    assert (changed.rows_read, changed.rows_written, changed.files_skipped) == (1, 0, 1)

    log = read_table(spark, config, "ingest_log").orderBy("batch_time").select("files", "files_skipped").collect()
    assert [(r.files, r.files_skipped) for r in log] == [
        ([first_day1], 0),
        ([], 1),
        ([logged(day2)], 1),
        ([logged(day1)], 1),
    ]


def test_changed_profile_updates_the_user(spark: SparkSession, config: Config, tmp_path: Path) -> None:
    events = write_jsonl(tmp_path / "a" / "events.jsonl", EVENTS[:1])
    ingest(spark, config, events, write_jsonl(tmp_path / "a" / "users.jsonl", USERS[:1]))
    moved = {**USERS[0], "region": "DE"}
    reports = ingest(spark, config, events, write_jsonl(tmp_path / "b" / "users.jsonl", [moved]))
    assert reports[1].rows_written == 1
    assertDataFrameEqual(read_table(spark, config, "users").select("user_id", "region", "membership_level"),
                         [Row("u1", "DE", "gold")])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_land_the_same_rows_aswrite_jsonl(
    spark: SparkSession, config: Config, tmp_path: Path, fmt: str
) -> None:
    rows = [{k: v for k, v in r.items() if k != "coupon"} for r in EVENTS]
    path = tmp_path / f"events.{fmt}"
    if fmt == "csv":
        _csv(path, rows)
    else:
        pd.DataFrame(rows).to_parquet(path)

    ingest(spark, config, str(path))

    assertDataFrameEqual(read_table(spark, config, "events").select(EVENT_COLUMNS), STORED)
    (rejected,) = read_table(spark, config, "quarantine").collect()
    assert rejected.reasons == ["unknown_event_type"]
    assert json.loads(rejected.record)["event_type"] == "click"


@pytest.mark.parametrize("name, content, fmt", [
    ("broken.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "jsonl"),
    ("broken.jsonl", b"just words\nand more words\n", "jsonl"),
    ("broken.csv", b"event_id,user_id\n\xff\xfe\x00\x01,\x02\n", "csv"),
    ("broken.parquet", b"event_id,user_id\ne1,u1\n", "parquet"),
])
def test_malformed_file_is_named_and_nothing_is_written(
    spark: SparkSession, config: Config, tmp_path: Path, name: str, content: bytes, fmt: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    if fmt == "jsonl":
        write_jsonl(folder / "good.jsonl", EVENTS)
    elif fmt == "csv":
        _csv(folder / "good.csv", EVENTS)
    else:
        pd.DataFrame(EVENTS).to_parquet(folder / "good.parquet")
    (folder / name).write_bytes(content)

    with pytest.raises(InputError) as err:
        ingest(spark, config, str(folder), fmt=fmt)

    message = str(err.value)
    assert name in message and "\n" not in message
    assert not any(table_exists(spark, config, t) for t in ("events", "users", "quarantine", "ingest_log"))


CSV_HEADER = b"event_id,user_id,event_time,event_type,price,quantity,rating,review_text\r\n"


def test_csv_quoted_line_breaks_and_quotes_stay_in_their_field(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    """RFC 4180: a review's quoted text holding a line that looks like a purchase is text."""
    path = tmp_path / "events.csv"
    path.write_bytes(CSV_HEADER + (
        b'e1,u1,2026-02-01T10:00:00Z,review,,,5,"Loved it.\ne9,u9,2026-02-01T11:00:00Z,purchase,999,3,,\nAgain!"\r\n'
        b'e2,u1,2026-02-01T10:05:00Z,review,,,2,"Broke: ""cheap"" plastic,\r\nreturned it"\r\n'
        b'e3,u2,2026-02-02T09:00:00Z,purchase,10.5,1,,\r\n'
        b'e4,u2,2026-02-02T09:30:00Z,review,,,9,"six\r\nstars"\r\n'
    ))

    ingest(spark, config, str(path))

    events = read_table(spark, config, "events").select("event_id", "user_id", "event_type", "price", "review_text")
    assertDataFrameEqual(events, [
        Row("e1", "u1", "review", None, "Loved it.\ne9,u9,2026-02-01T11:00:00Z,purchase,999,3,,\nAgain!"),
        Row("e2", "u1", "review", None, 'Broke: "cheap" plastic,\nreturned it'),
        Row("e3", "u2", "purchase", 10.5, None),
    ])
    (rejected,) = read_table(spark, config, "quarantine").collect()
    assert (rejected.reasons, json.loads(rejected.record)["review_text"]) == (["bad_rating"], "six\nstars")


def test_json_values_of_the_wrong_type_are_quarantined(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    base = {"event_time": "2026-02-01T10:00:00Z", "event_type": "view"}
    wrong = [
        {"event_id": "e5", "user_id": {"id": "u5"}, **base},
        {"event_id": "e6", "user_id": True, **base},
        {"event_id": "e7", "user_id": "u7", "category": ["books", "home"], **base},
        {"event_id": "e8", "user_id": "u8", "category": {"name": "books"}, **base},
    ]
    numeric_id = {"event_id": 9, "user_id": 42, "category": "books", **base, "dwell_seconds": "3.5"}
    events = write_jsonl(tmp_path / "events.jsonl", [*EVENTS, *wrong, numeric_id])
    users = write_jsonl(tmp_path / "users.jsonl", [USERS[0], {"user_id": "u2", "region": ["UK"]}])

    ingest(spark, config, events, users)

    stored = read_table(spark, config, "events").select(EVENT_COLUMNS)
    assertDataFrameEqual(stored, [*STORED, Row("9", "42", dt.datetime(2026, 2, 1, 10), "view", None, None, 3.5,
                                                None, None, dt.date(2026, 2, 1), "contract")])
    quarantine = read_table(spark, config, "quarantine").select("dataset", "record", "reasons")
    assertDataFrameEqual(quarantine, [
        Row("events", json.dumps(EVENTS[2]), ["unknown_event_type"]),
        *[Row("events", json.dumps(row), ["bad_type"]) for row in wrong],
        Row("users", json.dumps({"user_id": "u2", "region": ["UK"]}), ["bad_type"]),
    ])
    assert sorted(r.user_id for r in read_table(spark, config, "users").collect()) == ["u1"]


def test_parquet_column_of_the_wrong_type_is_quarantined(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    rows = [{**EVENTS[0], "category": ["A", "B"]}, {**EVENTS[1], "category": []}]
    path = tmp_path / "events.parquet"
    pd.DataFrame(rows).to_parquet(path)

    (report,) = ingest(spark, config, str(path))

    assert (report.rows_written, report.quarantined_by_reason) == (0, {"bad_type": 2})


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_undecodable_line_is_quarantined_and_the_rest_kept(
    spark: SparkSession, config: Config, tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"events.{fmt}"
    bad_byte = {"event_id": "e8", "user_id": "u\ufffd8", "event_time": "2026-02-01T10:00:00Z", "event_type": "view"}
    if fmt == "jsonl":
        write_jsonl(path, EVENTS)
        nul = {"event_id": "e9", "user_id": "u9", "review_text": "\x00\x01"}  # not JSON: raw control bytes
        lines = [json.dumps(bad_byte).replace("\\ufffd", "\xff"), json.dumps(nul).replace("\\u0000", "\x00")
                 .replace("\\u0001", "\x01")]
        path.write_bytes(path.read_bytes() + "\n".join(lines).encode("latin-1") + b"\n")
        expected = [(bad_byte, ["bad_encoding"]), (nul, ["missing_required", "bad_encoding"])]
    else:
        _csv(path, [{k: v for k, v in r.items() if k != "coupon"} for r in EVENTS])
        header = path.read_bytes().split(b"\r\n")[0].decode().split(",")
        line = ",".join(bad_byte.get(name, "") for name in header).replace("\ufffd", "\xff")
        path.write_bytes(path.read_bytes() + line.encode("latin-1") + b"\r\n")
        expected = [(bad_byte, ["bad_encoding"])]

    (report,) = ingest(spark, config, str(path))

    assertDataFrameEqual(read_table(spark, config, "events").select(EVENT_COLUMNS), STORED)
    quarantine = read_table(spark, config, "quarantine").where("NOT array_contains(reasons, 'unknown_event_type')")
    rejected = [(json.loads(r.record, strict=False), r.reasons) for r in quarantine.collect()]
    assert sorted(rejected, key=str) == sorted(expected, key=str)
    assert report.quarantined_by_reason == {
        "unknown_event_type": 1, "bad_encoding": len(expected), **({"missing_required": 1} if fmt == "jsonl" else {})}


def test_missing_required_column_is_refused(spark: SparkSession, config: Config, tmp_path: Path) -> None:
    path = _csv(tmp_path / "events.csv", [{"event_id": "e1", "user_id": "u1", "event_time": "2026-02-01"}])
    with pytest.raises(InputError, match=r"events files lack required column\(s\) event_type$"):
        ingest(spark, config, path)
    assert not table_exists(spark, config, "events")


def test_metastore_storage_writes_named_tables(spark: SparkSession, config: Config, tmp_path: Path) -> None:
    database = f"churn_{tmp_path.name}"
    named = config.model_copy(update={"storage": config.storage.model_copy(
        update={"kind": "metastore", "database": database})})
    ingest(spark, named, write_jsonl(tmp_path / "in" / "events.jsonl", EVENTS))
    assertDataFrameEqual(spark.table(f"{database}.events").select(EVENT_COLUMNS), STORED)
    assert spark.table(f"{database}.ingest_log").count() == 1


def test_relative_lakehouse_is_resolved_from_the_working_folder(
    spark: SparkSession, config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = write_jsonl(tmp_path / "in" / "events.jsonl", EVENTS[:2])
    monkeypatch.chdir(tmp_path)
    relative = config.model_copy(update={"lakehouse": "./lakehouse-rel"})
    ingest(spark, relative, events)
    assert (tmp_path / "lakehouse-rel" / "events" / "_delta_log").is_dir()
    assert sorted(r.event_id for r in read_table(spark, relative, "events").collect()) == ["e1", "e2"]


@pytest.mark.slow
def test_first_events_keep_each_users_first_event_ever(spark: SparkSession, config: Config, tmp_path: Path) -> None:
    """A MERGE taking the minimum per user: an earlier event moves it, a later one does not, a
    re-run changes nothing; a lakehouse without the table gets it built from all its events."""
    def batch(name: str, rows: list[tuple[str, str, str]]) -> str:
        return write_jsonl(tmp_path / name / "events.jsonl", [
            {"event_id": e, "user_id": u, "event_time": t, "event_type": "view"} for e, u, t in rows])

    def first_events() -> list[Row]:
        return sorted(read_table(spark, config, "first_events").collect())

    ingest(spark, config, batch("b1", [("e1", "u1", "2025-06-10T00:00:00Z"), ("e2", "u1", "2025-07-01T00:00:00Z")]))
    second = batch("b2", [("e3", "u1", "2025-05-01T00:00:00Z"), ("e4", "u2", "2026-01-01T00:00:00Z")])
    ingest(spark, config, second)
    ingest(spark, config, batch("b3", [("e5", "u1", "2026-02-01T00:00:00Z"), ("e6", "u2", "2026-02-01T00:00:00Z")]))
    ingest(spark, config, second)
    expected = [Row("u1", dt.datetime(2025, 5, 1)), Row("u2", dt.datetime(2026, 1, 1))]
    assert first_events() == expected

    storage.remove(config.table("first_events"))  # as left by a version before the table existed
    ingest(spark, config, batch("b4", [("e7", "u3", "2026-03-01T00:00:00Z")]))
    assert first_events() == [*expected, Row("u3", dt.datetime(2026, 3, 1))]
