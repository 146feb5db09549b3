"""The project's Delta tables: their schemas, partitioning, and how to reach them.

Tables are Delta folders under the lakehouse (``storage.kind: path``) or metastore
tables (``storage.kind: metastore``); ``Config.table(name)`` says which, and every read
and write goes through the helpers here so that both kinds work everywhere.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import ArrayType, LongType, MapType, StringType, StructField, StructType

from churn_spark.config import Config
from churn_spark.contract import EVENTS_SCHEMA, SPARK_TYPES, USERS_SCHEMA

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """A table's schema and partition columns."""

    schema: StructType
    partition_by: tuple[str, ...] = ()


_TEXT_LIST = ArrayType(StringType())
_COUNTS = MapType(StringType(), LongType())


def _schema(*columns: tuple[str, str | ArrayType | MapType], base: StructType | None = None) -> StructType:
    fields = list(base.fields) if base else []
    for name, dtype in columns:
        fields.append(StructField(name, SPARK_TYPES[dtype] if isinstance(dtype, str) else dtype))
    return StructType(fields)


SPECS = {
    "events": TableSpec(
        _schema(("source", "string"), ("ingested_at", "timestamp"), ("event_date", "date"),
                base=EVENTS_SCHEMA),
        partition_by=("event_date",),
    ),
    "users": TableSpec(_schema(("source", "string"), ("updated_at", "timestamp"), base=USERS_SCHEMA)),
    # Per user, the time of their first event ever (ingest keeps the minimum): tenure whatever
    # the feature history window.
    "first_events": TableSpec(_schema(("user_id", "string"), ("first_event_time", "timestamp"))),
    "quarantine": TableSpec(_schema(
        ("quarantine_id", "string"), ("dataset", "string"), ("source", "string"),
        ("source_file", "string"), ("record", "string"), ("reasons", _TEXT_LIST),
        ("batch_id", "string"), ("batch_time", "timestamp"),
    )),
    "ingest_log": TableSpec(_schema(
        ("batch_id", "string"), ("batch_time", "timestamp"), ("dataset", "string"),
        ("source", "string"), ("path", "string"), ("format", "string"), ("rows_read", "bigint"),
        ("rows_written", "bigint"), ("duplicates_skipped", "bigint"), ("quarantined", "bigint"),
        ("quarantined_by_reason", _COUNTS), ("extra_columns", _TEXT_LIST),
    )),
}


TABLES_WRITTEN_BY_INGEST = ("quarantine", "events", "first_events", "users", "ingest_log")


def ensure_table(spark: SparkSession, config: Config, name: str) -> DeltaTable:
    """Create table ``name`` (empty, with its schema) unless it exists; return it."""
    spec = SPECS[name]
    builder = DeltaTable.createIfNotExists(spark).addColumns(spec.schema)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    location = config.table(name)
    if config.storage.kind == "metastore":
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {config.storage.database}")
        builder = builder.tableName(location)
    else:
        builder = builder.location(location)
    return builder.execute()


def delta_table(spark: SparkSession, config: Config, name: str) -> DeltaTable:
    """The existing Delta table ``name``."""
    location = config.table(name)
    if config.storage.kind == "metastore":
        return DeltaTable.forName(spark, location)
    return DeltaTable.forPath(spark, location)


def read_table(spark: SparkSession, config: Config, name: str) -> DataFrame:
    """Table ``name`` as a DataFrame."""
    return delta_table(spark, config, name).toDF()


def table_exists(spark: SparkSession, config: Config, name: str) -> bool:
    """Whether table ``name`` has been created."""
    location = config.table(name)
    if config.storage.kind == "metastore":
        return spark.catalog.tableExists(location)
    return DeltaTable.isDeltaTable(spark, location)


def append(frame: DataFrame, config: Config, name: str) -> None:
    """Append ``frame`` to table ``name`` (one Delta transaction)."""
    writer = frame.write.format("delta").mode("append")
    location = config.table(name)
    if config.storage.kind == "metastore":
        writer.saveAsTable(location)
    else:
        writer.save(location)


def replace_dates(frame: DataFrame, config: Config, name: str, snapshot_dates: Sequence[dt.date]) -> int:
    """Overwrite exactly the partitions of ``snapshot_dates`` in table ``name`` (one transaction)."""
    dates = ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(set(snapshot_dates)))
    writer = (frame.write.format("delta").mode("overwrite").partitionBy("snapshot_date")
              .option("replaceWhere", f"snapshot_date IN ({dates})"))
    spark, location = frame.sparkSession, config.table(name)
    before = delta_table(spark, config, name).history(1).first()["version"] if table_exists(spark, config, name) else -1
    if config.storage.kind == "metastore":
        writer.saveAsTable(location)
    else:
        writer.save(location)
    written = delta_table(spark, config, name).history(1).first()
    # Nothing to add and nothing to remove is no commit at all: then no rows were written.
    rows = int(written["operationMetrics"].get("numOutputRows", 0)) if written["version"] > before else 0
    log.info("%s: wrote %d rows for %d snapshot date(s)", name, rows, len(set(snapshot_dates)))
    return rows
