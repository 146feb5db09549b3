"""The project's Delta tables: their schemas, partitioning, and how to reach them.

Tables are Delta folders under the lakehouse (``storage.kind: path``) or metastore
tables (``storage.kind: metastore``); ``Config.table(name)`` says which, and every read
and write goes through the helpers here so that both kinds work everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType, _parse_datatype_string

from churn_spark.config import Config
from churn_spark.contract import EVENTS_SCHEMA, USERS_SCHEMA


@dataclass(frozen=True)
class TableSpec:
    """A table's schema and partition columns."""

    schema: StructType
    partition_by: tuple[str, ...] = ()


def _extend(base: StructType, ddl: str) -> StructType:
    extra = _parse_datatype_string(ddl)
    return StructType(list(base.fields) + list(extra.fields))


SPECS = {
    "events": TableSpec(
        _extend(EVENTS_SCHEMA, "source string, ingested_at timestamp, event_date date"),
        partition_by=("event_date",),
    ),
    "users": TableSpec(_extend(USERS_SCHEMA, "source string, updated_at timestamp")),
    "quarantine": TableSpec(
        _parse_datatype_string(
            "quarantine_id string, dataset string, source string, source_file string, "
            "record string, reasons array<string>, batch_id string, batch_time timestamp"
        )
    ),
    "ingest_log": TableSpec(
        _parse_datatype_string(
            "batch_id string, batch_time timestamp, dataset string, source string, path string, "
            "format string, rows_read bigint, rows_written bigint, duplicates_skipped bigint, "
            "quarantined bigint, quarantined_by_reason map<string,bigint>, "
            "extra_columns array<string>"
        )
    ),
}


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
