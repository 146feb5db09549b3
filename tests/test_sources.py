"""Source mappings: loading and checking them, reading text files, and the worked examples ingested.

The Online Retail mapping runs on the real UCI file, checked against pandas' own counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from churn_spark.config import Config, load_config
from churn_spark.contract import SOURCE_FILE
from churn_spark.docs import MAPPING_EXAMPLES
from churn_spark.errors import ConfigError
from churn_spark.ingest import ingest, input_formats
from churn_spark.landing import read_landing
from churn_spark.mapping import name_columns, reader_options
from churn_spark.sources import ReadOptions, SourceMapping, load_source, load_source_file
from churn_spark.snapshots import run_features, run_labels
from churn_spark.tables import read_table
from tests.conftest import ONLINE_RETAIL, ROOT, TEST_SETTINGS


def _expected_counts(path: str) -> dict[str, int]:
    """What the mapping should do, computed independently with pandas."""
    lines = pd.read_parquet(path)
    cancelled = lines["InvoiceNo"].str.startswith("C")
    quantity = lines["Quantity"].where(~cancelled, -lines["Quantity"])
    no_customer = lines["CustomerID"].isna()
    bad_price = lines["UnitPrice"] < 0
    bad_quantity = quantity < 1
    rejected = no_customer | bad_price | bad_quantity
    key = ["InvoiceNo", "StockCode", "Quantity", "UnitPrice", "InvoiceDate"]
    valid = lines[~rejected]
    return {
        "rows": len(lines),
        "missing_required": int(no_customer.sum()),
        "bad_price": int(bad_price.sum()),
        "bad_quantity": int(bad_quantity.sum()),
        "quarantined": int(rejected.sum()),
        "written": len(valid.drop_duplicates(key)),
        "refunds": int((valid.drop_duplicates(key)["InvoiceNo"].str.startswith("C")).sum()),
        "customers": int(lines["CustomerID"].nunique()),
        "customer_rows": int((~no_customer).sum()),
    }


needs_data = pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason="shared Online Retail data not present")
SNAPSHOT = dt.date(2011, 9, 1)


@pytest.fixture(scope="module")
def retail(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, list]:
    """The real file ingested once into a lakehouse of this module's own."""
    lakehouse = tmp_path_factory.mktemp("retail") / "lakehouse"
    config = load_config(ROOT / "conf" / "local.yaml", [*TEST_SETTINGS, f"lakehouse={lakehouse}",
                                                        "labels.horizon_days=90", "labels.lookback_days=90"])
    return config, ingest(spark, config, str(ONLINE_RETAIL), source="online_retail")


@pytest.mark.slow
@needs_data
def test_online_retail_lands_in_the_contract(spark: SparkSession, retail: tuple[Config, list]) -> None:
    expected = _expected_counts(str(ONLINE_RETAIL))
    config, (events, users) = retail

    assert (events.rows_read, events.rows_written, events.quarantined) == (
        expected["rows"], expected["written"], expected["quarantined"])
    assert events.duplicates_skipped == expected["rows"] - expected["quarantined"] - expected["written"]
    reasons = {k: expected[k] for k in ("missing_required", "bad_price", "bad_quantity") if expected[k]}
    assert events.quarantined_by_reason == reasons
    assert (users.rows_read, users.rows_written) == (expected["customer_rows"], expected["customers"])
    stored = read_table(spark, config, "events")
    assert stored.where("event_type = 'refund'").count() == expected["refunds"]
    cancellation = stored.where("session_id = 'C536379' AND product_id = 'D'").select(
        "user_id", "event_type", "event_time", "price", "quantity", "source")
    assertDataFrameEqual(cancellation, [
        Row("14527", "refund", dt.datetime(2010, 12, 1, 9, 41), 27.5, 1, "online_retail")])
    assertDataFrameEqual(read_table(spark, config, "users").where("user_id = '12346'").select(
        "user_id", "region", "signup_time"), [Row("12346", "United Kingdom", None)])


def _expected_snapshot(path: str) -> tuple[dict[str, float], dict[str, int]]:
    """Spend in the 90 days before T and labels (90-day horizon), by pandas from the raw file."""
    lines = pd.read_parquet(path)
    lines = lines[lines["CustomerID"].notna() & (lines["UnitPrice"] >= 0) & (lines["Quantity"] >= 1)]
    lines = lines.drop_duplicates(["InvoiceNo", "StockCode", "Quantity", "UnitPrice", "InvoiceDate"])
    bought = lines[~lines["InvoiceNo"].str.startswith("C")].assign(
        user=lambda f: f["CustomerID"].astype("int64").astype(str), amount=lambda f: f["UnitPrice"] * f["Quantity"])
    t = pd.Timestamp(SNAPSHOT)
    before = bought[(bought["InvoiceDate"] >= t - pd.Timedelta(days=90)) & (bought["InvoiceDate"] < t)]
    after = set(bought[(bought["InvoiceDate"] >= t) & (bought["InvoiceDate"] < t + pd.Timedelta(days=90))]["user"])
    spend = before.groupby("user")["amount"].sum().to_dict()
    return spend, {user: int(user not in after) for user in spend}


@pytest.mark.slow
@needs_data
def test_features_and_labels_on_real_data(spark: SparkSession, retail: tuple[Config, list]) -> None:
    config, _ = retail
    run_features(spark, config, [SNAPSHOT])
    run_labels(spark, config, [SNAPSHOT])
    spend, labels = _expected_snapshot(str(ONLINE_RETAIL))

    features = read_table(spark, config, "user_features")
    # No page views, reviews or service contacts in this source: those features are "none".
    assert features.where("views_90d != 0 OR view_seen != 0 OR days_since_last_view != 180 OR reviews_90d != 0 "
                          "OR sentiment_mean_90d != 0 OR service_contacts_90d != 0 "
                          "OR dwell_total_90d != 0").count() == 0
    stored = {r.user_id: r.spend_90d for r in features.where("spend_90d > 0").select("user_id", "spend_90d").collect()}
    assert stored == pytest.approx(spend)
    training = read_table(spark, config, "training_set")
    assert {r.user_id: r.label for r in training.select("user_id", "label").collect()} == labels
    assert 0.2 < sum(labels.values()) / len(labels) < 0.8


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"--source shopify: no mapping at conf/sources/shopify.yaml "
                                          r"\(known: contract, online_retail\)"):
        load_source("shopify")


# ---- mapping files: one-line refusals naming the file, the key and what was expected ----

def _mapping(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, problem", [
    ("events:\n  usr_id: customer\n", "events.usr_id: not a contract column (expected one of event_id, user_id, "
     "event_time, event_type, session_id, product_id, category, channel, review_text, price, quantity, "
     "dwell_seconds, rating)"),
    ("read:\n  delimeter: ';'\n", "read.delimeter: unknown key (expected one of delimiter, header, columns, encoding)"),
    ("users:\n  columns:\n    agee: age\n", "users.columns.agee: not a contract column (expected one of user_id, "
     "signup_time, gender, age, region, membership_level)"),
    ("read:\n  delimiter: ';;'\n", "read.delimiter: ';;': expected one character, tab or whitespace"),
    ("read:\n  encoding: utf-9\n", "read.encoding: 'utf-9': unknown encoding (e.g. UTF-8, ISO-8859-1, windows-1252)"),
    ("read:\n  delimiter: whitespace\n  header: false\n",
     "read: no column names: give columns (or header: true) for whitespace-separated files"),
    ("events:\n  price: 1.5\n", "events.price: expected text (quote a Spark SQL expression in YAML)"),
    ("format: tsv\n", "format: Input should be 'parquet', 'jsonl' or 'csv'"),
    ("events:\n  user_id: \"java_method('java.lang.System', 'getenv', 'CHURN_EXPORT_SALT')\"\n",
     "events.user_id: java_method() is not allowed (calls Java code)"),
    ("users:\n  where: \"input_file_name() LIKE '%x%'\"\n  columns:\n    user_id: c\n",
     "users.where: input_file_name() is not allowed (reads the landing file's name, not the row)"),
    ("event_users:\n  columns:\n    user_id: \"reflect('java.lang.System', 'getenv', 'X')\"\n",
     "event_users.columns.user_id: reflect() is not allowed (calls Java code)"),
])
def test_a_bad_mapping_names_the_file_key_and_expectation(tmp_path: Path, text: str, problem: str) -> None:
    path = _mapping(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_source_file(path)
    assert str(err.value) == f"{path}: {problem}"


@pytest.mark.parametrize("name", ["../x", "../../conf/local", "/abs/path", "sub/online_retail", "online_retail.yaml"])
def test_source_names_a_mapping_in_conf_sources_only(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_source(name)
    assert str(err.value) == (f"--source {name!r}: expected the name of a mapping in conf/sources/ (letters, digits, "
                              "_ and -); for a file elsewhere use --source-file PATH")


@pytest.mark.parametrize("path", [example for _, example, _ in MAPPING_EXAMPLES])
def test_the_shipped_mappings_and_worked_examples_load(path: str) -> None:
    mapping = load_source_file(path)
    assert mapping.name == Path(path).stem and mapping.events is not None


# ---- reading: delimiters, whitespace, headers, names, encodings ----

def _read(spark: SparkSession, path: Path, read: ReadOptions) -> list[Row]:
    landed = name_columns(read_landing(spark, str(path), "csv", reader_options(read)), read)
    return landed.drop(SOURCE_FILE).collect()


def test_whitespace_lines_split_into_named_fields(spark: SparkSession, tmp_path: Path) -> None:
    log = tmp_path / "purchases.log"
    log.write_bytes("customer  item\tnote\n 17   caf\xe9 two words here \n\n  \t \n18\tB-7\n".encode("latin-1"))

    rows = _read(spark, log, ReadOptions(delimiter="whitespace", encoding="ISO-8859-1"))

    assert rows == [Row(customer="17", item="café", note="two words here", _record=" 17   café two words here "),
                    Row(customer="18", item="B-7", note=None, _record="18\tB-7")]


def test_delimited_text_without_header_takes_the_given_names(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "lines.txt"
    path.write_text('1;"a;b";x\n2;c;y\n')

    rows = _read(spark, path, ReadOptions(delimiter=";", header=False, columns=["id", "text"]))

    assert [(r.id, r.text, r._c2) for r in rows] == [("1", "a;b", "x"), ("2", "c", "y")]


# ---- ingest: derived ids, profile precedence, per-input formats ----

PURCHASE_LOG = [
    "1042   2026-01-03 10:15:00   A-100   2   9.99",
    "1042   2026-01-03 10:15:00   B-7     1   24.50",
    "77     2026-01-04 08:00:01   A-100   1   9.99",
    "77     2026-01-05 09:30:00   C-3     x   1.00",
]


def _sha(*fields: str) -> str:
    return hashlib.sha256("|".join(fields).encode()).hexdigest()


@pytest.mark.slow
def test_purchase_log_ids_are_stable_across_runs_and_file_splits(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    whole = tmp_path / "whole" / "purchases.log"
    whole.parent.mkdir()
    whole.write_text("\n".join(PURCHASE_LOG) + "\n")
    split = tmp_path / "split"
    split.mkdir()
    (split / "part-1.log").write_text("\n".join(PURCHASE_LOG[:1]) + "\n")
    (split / "part-2.log").write_text("\n".join(PURCHASE_LOG[1:]) + "\n")
    other = config.model_copy(update={"lakehouse": str(tmp_path / "lakehouse-split")})
    mapping = load_source_file("conf/sources/examples/purchase_log.yaml")

    (events, users) = ingest(spark, config, str(whole), source=mapping)
    ingest(spark, other, str(split), source=mapping)

    expected = [
        Row(_sha("1042", "2026-01-03", "10:15:00", "A-100", "2", "9.99"), "1042", dt.datetime(2026, 1, 3, 10, 15),
            "purchase", "A-100", 9.99, 2, "purchase_log"),
        Row(_sha("1042", "2026-01-03", "10:15:00", "B-7", "1", "24.50"), "1042", dt.datetime(2026, 1, 3, 10, 15),
            "purchase", "B-7", 24.5, 1, "purchase_log"),
        Row(_sha("77", "2026-01-04", "08:00:01", "A-100", "1", "9.99"), "77", dt.datetime(2026, 1, 4, 8, 0, 1),
            "purchase", "A-100", 9.99, 1, "purchase_log"),
    ]
    columns = ["event_id", "user_id", "event_time", "event_type", "product_id", "price", "quantity", "source"]
    assertDataFrameEqual(read_table(spark, config, "events").select(columns), expected)
    assertDataFrameEqual(read_table(spark, other, "events").select(columns), expected)
    assert (events.rows_read, events.rows_written, events.quarantined_by_reason) == (4, 3, {"bad_quantity": 1})
    assert sorted(r.user_id for r in read_table(spark, config, "users").collect()) == ["1042", "77"]
    assert users.path == str(whole)
    again = ingest(spark, config, str(split), source=mapping)[0]
    assert (again.rows_written, again.duplicates_skipped) == (0, 3)


def test_profile_file_wins_per_column_and_event_rows_fill_in(
    spark: SparkSession, config: Config, tmp_path: Path
) -> None:
    at = dt.datetime(2026, 2, 1, 12)
    pd.DataFrame({
        "household_id": [1, 1, 2, 3], "basket_id": [10, 10, 11, 12], "product_id": ["p1", "p2", "p1", "p3"],
        "quantity": [2, -1, 1, 1], "sales_value": [5.0, 3.0, 2.5, 7.0], "purchased_at": [at] * 4,
        "store_region": ["South", "South", "East", None],
    }).to_parquet(tmp_path / "transactions.parquet", coerce_timestamps="us")
    pd.DataFrame({
        "household_id": [1, 3, 4], "age_band": ["25-34", "65+", "unknown"], "region": ["North", None, "West"],
        "membership": ["gold", None, "silver"],
    }).to_parquet(tmp_path / "households.parquet")

    ingest(spark, config, str(tmp_path / "transactions.parquet"), str(tmp_path / "households.parquet"),
           source=load_source_file("conf/sources/examples/retailer.yaml"))

    # 1: the file's region wins over the transactions'; 2: transactions only; 3: the file has no
    # region, the transactions none either; 4: in the file only.
    assertDataFrameEqual(read_table(spark, config, "users").select("user_id", "age", "region", "membership_level"), [
        Row("1", 25, "North", "gold"), Row("2", None, "East", None), Row("3", 65, None, None),
        Row("4", None, "West", "silver")])
    assertDataFrameEqual(read_table(spark, config, "events").select("event_id", "event_type", "price", "quantity"), [
        Row("10:p1", "purchase", 2.5, 2), Row("10:p2", "refund", 3.0, 1), Row("11:p1", "purchase", 2.5, 1),
        Row("12:p3", "purchase", 7.0, 1)])


def test_profile_file_fills_a_region_the_event_rows_lack(spark: SparkSession, config: Config, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"id": "e1", "who": "u1", "at": "2026-02-01T10:00:00Z", "country": "UK"}\n'
        '{"id": "e2", "who": "u2", "at": "2026-02-01T11:00:00Z"}\n')
    profiles = tmp_path / "profiles.csv"
    profiles.write_text("who,country,level\nu1,FR,gold\nu2,DE,\n")
    mapping = _mapping(tmp_path, (
        "events:\n  event_id: id\n  user_id: who\n  event_time: at\n  event_type: \"'view'\"\n"
        "event_users:\n  columns:\n    user_id: who\n    region: country\n"
        "users:\n  columns:\n    user_id: who\n    region: country\n    membership_level: level\n"))

    (events_report, users_report) = ingest(spark, config, str(events), str(profiles),
                                           source=load_source_file(mapping))

    assertDataFrameEqual(read_table(spark, config, "users").select("user_id", "region", "membership_level"), [
        Row("u1", "FR", "gold"), Row("u2", "DE", None)])
    assert (events_report.format, users_report.format, users_report.rows_read) == ("jsonl", "csv", 4)


def test_jsonl_events_with_a_csv_profile_file(spark: SparkSession, config: Config, tmp_path: Path) -> None:
    events = tmp_path / "in" / "events.jsonl"
    events.parent.mkdir()
    events.write_text('{"event_id": "e1", "user_id": "u1", "event_time": "2026-02-01T10:00:00Z", '
                      '"event_type": "purchase", "price": 4.5}\n')
    users = tmp_path / "in" / "users.csv"
    users.write_text("user_id,age,region\nu1,41,UK\n")

    reports = ingest(spark, config, str(events), str(users))

    assert [(r.dataset, r.format, r.rows_written) for r in reports] == [("events", "jsonl", 1), ("users", "csv", 1)]
    assertDataFrameEqual(read_table(spark, config, "users").select("user_id", "age", "region"), [Row("u1", 41, "UK")])
    log = read_table(spark, config, "ingest_log").select("dataset", "format").collect()
    assert sorted(tuple(r) for r in log) == [("events", "jsonl"), ("users", "csv")]


def test_each_input_format_comes_from_its_own_files() -> None:
    contract = load_source("contract")
    assert input_formats(contract, "a/events.jsonl", "b/users.csv") == ("jsonl", "csv")
    assert input_formats(contract, "a/events.jsonl", "b/users.csv", "csv", "parquet") == ("csv", "parquet")
    assert input_formats(contract, "a/events.jsonl", "b/users", "jsonl") == ("jsonl", "jsonl")
    retailer = load_source_file("conf/sources/examples/retailer.yaml")
    assert input_formats(retailer, "t.data", "h.data") == ("parquet", "parquet")
    assert input_formats(load_source_file("conf/sources/examples/purchase_log.yaml"), "p.log") == ("csv", None)


def test_a_mapping_built_in_code_is_checked_too(spark: SparkSession, config: Config) -> None:
    mapping = SourceMapping(name="notebook", events={"user_id": "reflect('java.lang.System', 'getenv', 'X')"})
    with pytest.raises(ConfigError) as err:
        ingest(spark, config, "nowhere.jsonl", source=mapping)
    assert str(err.value) == "source notebook: events.user_id: reflect() is not allowed (calls Java code)"
