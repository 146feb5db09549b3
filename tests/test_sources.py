"""The Online Retail mapping, on the real UCI file, checked against pandas' own counts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from churn_spark.config import Config, load_config
from churn_spark.errors import ConfigError
from churn_spark.ingest import ingest
from churn_spark.sources import load_source
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


@needs_data
def test_features_and_labels_on_real_data(spark: SparkSession, retail: tuple[Config, list]) -> None:
    config, _ = retail
    run_features(spark, config, [SNAPSHOT])
    run_labels(spark, config, [SNAPSHOT])
    spend, labels = _expected_snapshot(str(ONLINE_RETAIL))

    features = read_table(spark, config, "user_features")
    # No page views, reviews or service contacts in this source: those features are "none".
    assert features.where("views_90d != 0 OR view_seen != 0 OR days_since_last_view != 180 OR reviews_90d != 0 "
                          "OR sentiment_mean_90d != 0 OR service_contacts_90d != 0 OR dwell_total_90d != 0").count() == 0
    stored = {r.user_id: r.spend_90d for r in features.where("spend_90d > 0").select("user_id", "spend_90d").collect()}
    assert stored == pytest.approx(spend)
    training = read_table(spark, config, "training_set")
    assert {r.user_id: r.label for r in training.select("user_id", "label").collect()} == labels
    assert 0.2 < sum(labels.values()) / len(labels) < 0.8


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"--source shopify: no mapping at conf/sources/shopify.yaml "
                                          r"\(known: contract, online_retail\)"):
        load_source("shopify")
