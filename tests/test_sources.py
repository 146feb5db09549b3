"""The Online Retail mapping, on the real UCI file, checked against pandas' own counts."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from churn_spark.config import Config
from churn_spark.errors import ConfigError
from churn_spark.ingest import ingest
from churn_spark.sources import load_source
from churn_spark.tables import read_table
from tests.conftest import ONLINE_RETAIL


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


@pytest.mark.skipif(not ONLINE_RETAIL.exists(), reason="shared Online Retail data not present")
def test_online_retail_lands_in_the_contract(spark: SparkSession, config: Config) -> None:
    expected = _expected_counts(str(ONLINE_RETAIL))

    events, users = ingest(spark, config, str(ONLINE_RETAIL), source="online_retail")

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


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"--source shopify: no mapping at conf/sources/shopify.yaml "
                                          r"\(known: contract, online_retail\)"):
        load_source("shopify")
