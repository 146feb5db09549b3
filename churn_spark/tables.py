"""The project's Delta tables: every table's schema and partitioning, and how to reach them.

Tables are Delta folders under the lakehouse (``storage.kind: path``) or metastore
tables (``storage.kind: metastore``); ``Config.table(name)`` says which, and every read
and write goes through the helpers here so that both kinds work everywhere.

Every commit is retried, a bounded number of times, when a concurrent writer's commit
conflicts with it (two ``score`` runs of one date, two jobs creating one table): each write
here is idempotent (a ``replaceWhere`` overwrite, a keyed merge, a creation if absent, or an
append whose failed attempt committed nothing), so a retry never loses or duplicates rows.
A local lakehouse is checked before the first write (a file in the way, a read-only disk),
and a failure of the disk itself is reported in one line naming the location.
"""

from __future__ import annotations

import datetime as dt
import errno
import logging
import posixpath
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, DataFrameReader, DataFrameWriter, Row, SparkSession
from pyspark.sql.types import ArrayType, DataType, LongType, MapType, StringType, StructField, StructType

from churn_spark import storage
from churn_spark.config import TABLES, Config
from churn_spark.contract import EVENTS_SCHEMA, SPARK_TYPES, USERS_SCHEMA
from churn_spark.errors import StorageError
from churn_spark.features import catalogue
from churn_spark.features.partials import schema_columns as daily_columns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """A table's schema and partition columns."""

    schema: StructType
    partition_by: tuple[str, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()  # Delta table properties set at creation


_TEXT_LIST = ArrayType(StringType())
_COUNTS = MapType(StringType(), LongType())
_FILES = ArrayType(StructType([StructField("path", StringType()), StructField("size", LongType()),
                               StructField("checksum", StringType())]))


def _schema(*columns: tuple[str, str | ArrayType | MapType], base: StructType | None = None) -> StructType:
    fields = list(base.fields) if base else []
    for name, dtype in columns:
        fields.append(StructField(name, _type(dtype) if isinstance(dtype, str) else dtype))
    return StructType(fields)


def _type(name: str) -> DataType:
    """A type by its simple name: one of ``SPARK_TYPES``, or ``array<...>`` of one."""
    if name.startswith("array<") and name.endswith(">"):
        return ArrayType(_type(name[len("array<"):-1]))
    return SPARK_TYPES[name]


# The events table keeps a change data feed: the rollup reads which days new events touched.
CHANGE_FEED = ("delta.enableChangeDataFeed", "true")


_SNAPSHOT = ("snapshot_date",)

SPECS = {
    "events": TableSpec(
        _schema(("source", "string"), ("ingested_at", "timestamp"), ("event_date", "date"),
                base=EVENTS_SCHEMA),
        partition_by=("event_date",), properties=(CHANGE_FEED,),
    ),
    # Per user and UTC day, the partial aggregates every feature is folded from (features.partials).
    "user_daily": TableSpec(_schema(*daily_columns()), partition_by=("day",)),
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
        # Added later (add_columns gives them to an older table): the files read, and the
        # count of those skipped as already ingested.
        ("files", _FILES), ("files_skipped", "bigint"),
    )),
    # user_features and training_set hold the configured feature catalogue: see table_spec.
    "label_stats": TableSpec(_schema(
        ("snapshot_date", "date"), ("eligible_users", "bigint"), ("churners", "bigint"),
        ("churn_rate", "double"), ("horizon_days", "int"), ("lookback_days", "int"),
        ("eligibility", "string"), ("computed_at", "timestamp"),
    ), partition_by=_SNAPSHOT),
    "churn_scores": TableSpec(_schema(
        ("user_id", "string"), ("snapshot_date", "date"), ("churn_probability", "double"),
        ("risk_tier", "string"), ("top_reasons", _TEXT_LIST), ("reason_features", _TEXT_LIST),
        ("spend_90d", "double"), ("model_version", "string"), ("scored_at", "timestamp"),
    ), partition_by=_SNAPSHOT),
    "alerts": TableSpec(_schema(
        ("user_id", "string"), ("snapshot_date", "date"), ("churn_probability", "double"),
        ("previous_probability", "double"), ("risk_tier", "string"), ("previous_tier", "string"),
        ("alert_reason", "string"), ("top_reasons", _TEXT_LIST), ("reason_features", _TEXT_LIST),
        ("suggested_action", "string"), ("spend_90d", "double"), ("model_version", "string"),
        ("scored_at", "timestamp"),
        # The assignment of the action (churn_spark.actions; added later: older alerts have none).
        ("action_cost", "double"), ("assigned_by", "string"), ("propensity", "double"),
    ), partition_by=_SNAPSHOT),
    # Per run of churn-spark policy (churn_spark.policy), keyed by the last matured date it learnt
    # from: each policy's net value per alerted user by each estimator, with its 95% interval and
    # effective sample size; action "all" is the whole policy, any other the part its users add.
    "policy_evaluation": TableSpec(_schema(
        ("through_date", "date"), ("policy_version", "string"), ("policy", "string"), ("estimator", "string"),
        ("action", "string"), ("users", "bigint"), ("value", "double"), ("low", "double"), ("high", "double"),
        ("ess", "double"), ("rows", "bigint"), ("computed_at", "timestamp"),
    ), partition_by=("through_date",)),
    # Real-time warnings (churn_spark.live): at most one per (user, kind, day), keyed by warning_id.
    "warnings": TableSpec(_schema(
        ("warning_id", "string"), ("user_id", "string"), ("day", "date"), ("kind", "string"),
        ("warned_at", "timestamp"), ("features_at", "date"), ("probability_before", "double"),
        ("probability_after", "double"), ("risk_tier", "string"), ("top_reasons", _TEXT_LIST),
        ("reason_features", _TEXT_LIST), ("suggested_action", "string"), ("spend_90d", "double"),
        ("model_version", "string"),
    ), partition_by=("day",)),
    # Per scoring date, each feature's and the score's drift from the model's reference (churn_spark.drift).
    "drift_metrics": TableSpec(_schema(
        ("snapshot_date", "date"), ("model_version", "string"), ("feature", "string"), ("psi", "double"),
        ("js_distance", "double"), ("rows", "bigint"), ("computed_at", "timestamp"),
    ), partition_by=_SNAPSHOT),
    # Per matured scoring run, its realised performance (churn_spark.monitor).
    "model_performance": TableSpec(_schema(
        ("snapshot_date", "date"), ("model_version", "string"), ("horizon_days", "int"), ("users", "bigint"),
        ("churn_rate", "double"), ("roc_auc", "double"), ("pr_auc", "double"), ("top_decile_lift", "double"),
        ("ece", "double"), ("alerts", "bigint"), ("alert_precision", "double"), ("test_roc_auc", "double"),
        ("computed_at", "timestamp"),
    ), partition_by=_SNAPSHOT),
    # One row per scoring date; the columns after recorded_at were added later (runs.py adds
    # them to an older table).
    "score_runs": TableSpec(_schema(
        ("snapshot_date", "date"), ("model_version", "string"), ("users_scored", "bigint"),
        ("high", "bigint"), ("medium", "bigint"), ("low", "bigint"), ("lapsed", "bigint"),
        ("new_alerts", "bigint"), ("revenue_at_risk", "double"), ("recorded_at", "timestamp"),
        ("status", "string"), ("scored_at", "timestamp"), ("previous_snapshot", "date"),
        ("previous_scored_at", "timestamp"),
    ), partition_by=_SNAPSHOT),
}


def table_spec(config: Config, name: str) -> TableSpec:
    """The schema and partitioning of table ``name`` under ``config`` (the feature tables hold
    the configured catalogue: keys, the label for ``training_set``, then every feature).

    Raises
    ------
    ValueError
        If ``name`` is not one of the project's tables.
    """
    if name in SPECS:
        return SPECS[name]
    if name not in ("user_features", "training_set"):
        raise ValueError(f"table: unknown table {name!r}; known: {', '.join(TABLES)}")
    label = (("label", "int"),) if name == "training_set" else ()
    columns = [("user_id", "string"), ("snapshot_date", "date"), *label,
               *((f.name, f.dtype) for f in catalogue(config.features))]
    return TableSpec(_schema(*columns), partition_by=_SNAPSHOT)


def conform(frame: DataFrame, config: Config, name: str) -> DataFrame:
    """``frame`` with exactly table ``name``'s columns, in its order.

    Raises
    ------
    StorageError
        A column is missing, unexpected, or of another type (nullability aside): nothing is written.
    """
    expected = {f.name: f.dataType.simpleString() for f in table_spec(config, name).schema.fields}
    actual = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    problems = [f"missing {c}" for c in expected if c not in actual]
    problems += [f"unexpected {c}" for c in actual if c not in expected]
    problems += [f"{c} is {actual[c]}, expected {t}"
                 for c, t in expected.items() if c in actual and actual[c] != t]
    if problems:
        raise StorageError(f"{config.table(name)}: rows do not match the table's schema ({'; '.join(problems)})")
    return frame.select(*expected)


TABLES_WRITTEN_BY_INGEST = ("quarantine", "events", "first_events", "users", "ingest_log")


def ensure_table(spark: SparkSession, config: Config, name: str) -> DeltaTable:
    """Create table ``name`` (empty, with its schema) unless it exists; return it.

    Two jobs creating the same table at once both succeed: the one whose creation loses the
    race retries, finds the table and uses it.
    """
    check_location(config, name, write=True)
    return _committed(config.table(name), lambda: _create(spark, config, name))


def _create(spark: SparkSession, config: Config, name: str) -> DeltaTable:
    spec = table_spec(config, name)
    builder = DeltaTable.createIfNotExists(spark).addColumns(spec.schema)
    if spec.partition_by:
        builder = builder.partitionedBy(*spec.partition_by)
    for key, value in spec.properties:
        builder = builder.property(key, value)
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


def read_table(spark: SparkSession, config: Config, name: str, version: int | None = None) -> DataFrame:
    """Table ``name`` as a DataFrame (as of Delta ``version`` when one is given)."""
    if version is None:
        return delta_table(spark, config, name).toDF()
    return _load(spark.read.format("delta").option("versionAsOf", version), config, name)


def read_stream(spark: SparkSession, config: Config, name: str, options: dict[str, str]) -> DataFrame:
    """Table ``name`` as a streaming source (Delta's source options ``options``)."""
    reader = spark.readStream.format("delta").options(**options)
    location = config.table(name)
    return reader.table(location) if config.storage.kind == "metastore" else reader.load(location)


def version(spark: SparkSession, config: Config, name: str) -> int:
    """The latest Delta version of table ``name``."""
    return int(delta_table(spark, config, name).history(1).first()["version"])


def changes(spark: SparkSession, config: Config, name: str, start: int, end: int) -> DataFrame:
    """The rows versions ``start`` to ``end`` of table ``name`` inserted, updated or deleted
    (Delta's change data feed: the table's columns, ``_change_type``, ``_commit_version``)."""
    return _load(spark.read.format("delta").option("readChangeFeed", "true")
                 .option("startingVersion", start).option("endingVersion", end), config, name)


def add_columns(spark: SparkSession, config: Config, name: str, added: Sequence[str]) -> None:
    """Give table ``name``, written before columns ``added`` were in its spec, those columns
    (null in the rows it holds). No commit where it has them, or does not exist yet."""
    if not table_exists(spark, config, name):
        return
    have = set(read_table(spark, config, name).columns)
    types = {f.name: f.dataType.simpleString() for f in table_spec(config, name).schema.fields}
    missing = [f"{c} {types[c]}" for c in added if c not in have]
    if missing:
        location = config.table(name)
        target = location if config.storage.kind == "metastore" else f"delta.`{location}`"
        spark.sql(f"ALTER TABLE {target} ADD COLUMNS ({', '.join(missing)})")


def keep_change_feed(spark: SparkSession, config: Config, name: str) -> None:
    """Turn on the change data feed of table ``name`` (for a table created before its spec asked
    for it); from the next version on its changes can be read. No commit if it is on already."""
    properties = delta_table(spark, config, name).detail().first()["properties"] or {}
    key, value = CHANGE_FEED
    if properties.get(key) == value:
        return
    location = config.table(name)
    target = location if config.storage.kind == "metastore" else f"delta.`{location}`"
    spark.sql(f"ALTER TABLE {target} SET TBLPROPERTIES ('{key}' = '{value}')")


def last_tagged(spark: SparkSession, config: Config, name: str, prefix: str) -> str | None:
    """The ``userMetadata`` of the latest commit of table ``name`` that starts with ``prefix``
    (among its last commits), or None."""
    history = delta_table(spark, config, name).history(_HISTORY_SEARCHED)
    found = history.where(history.userMetadata.startswith(prefix)).orderBy(history.version.desc()).first()
    return found["userMetadata"] if found is not None else None


def table_exists(spark: SparkSession, config: Config, name: str) -> bool:
    """Whether table ``name`` has been created.

    Raises
    ------
    StorageError
        A file stands where the table or the lakehouse folder should be (the table is not
        merely missing).
    """
    location = config.table(name)
    if config.storage.kind == "metastore":
        return spark.catalog.tableExists(location)
    check_location(config, name)
    return DeltaTable.isDeltaTable(spark, location)


def append(frame: DataFrame, config: Config, name: str) -> None:
    """Append ``frame`` to table ``name`` (one Delta transaction; a conflicting attempt commits
    nothing, so retrying it appends the rows once)."""
    _save(frame.write.format("delta").mode("append"), config, name)


def _save(writer: DataFrameWriter, config: Config, name: str) -> None:
    """Commit ``writer``'s write to table ``name``, retried on a conflicting concurrent commit."""
    location = config.table(name)
    check_location(config, name, write=True)
    if config.storage.kind == "metastore":
        _committed(location, lambda: writer.saveAsTable(location))
    else:
        _committed(location, lambda: writer.save(location))


def _load(reader: DataFrameReader, config: Config, name: str) -> DataFrame:
    location = config.table(name)
    return reader.table(location) if config.storage.kind == "metastore" else reader.load(location)


def merge(spark: SparkSession, config: Config, name: str, staged: DataFrame, key: str | Sequence[str],
          update_when: str | None = None, within: str | None = None) -> Row:
    """Insert the rows of ``staged`` whose ``key`` (a column, or several) is not in table
    ``name`` yet and, with ``update_when``, update the stored rows of the same key where that
    condition holds (``t.`` the stored row, ``s.`` the staged one; ``"true"``: always). Creates
    the table if needed. ``within``, a condition on ``t.``, says where in the table the keys
    can be (its partitions), so that only those files are read.

    Returns
    -------
    Row
        Delta's merge metrics (``num_inserted_rows``, ``num_updated_rows``, ...) of the attempt
        that committed: a retried merge finds the rows a concurrent one stored and skips them.
    """
    check_location(config, name, write=True)

    def attempt() -> Row:
        keys = [key] if isinstance(key, str) else list(key)
        on = " AND ".join([f"t.{k} = s.{k}" for k in keys] + ([f"({within})"] if within else []))
        builder = _create(spark, config, name).alias("t").merge(staged.alias("s"), on)
        if update_when is not None:
            builder = builder.whenMatchedUpdateAll(condition=update_when)
        return builder.whenNotMatchedInsertAll().execute().first()

    return _committed(config.table(name), attempt)


def date_list(days: Sequence[dt.date]) -> str:
    """``days`` as SQL date literals for an ``IN (...)`` condition, sorted, each once."""
    return ", ".join(f"DATE'{d.isoformat()}'" for d in sorted(set(days)))


def replace_dates(frame: DataFrame, config: Config, name: str, snapshot_dates: Sequence[dt.date] | None,
                  tag: str | None = None) -> int:
    """Overwrite exactly the partitions of ``snapshot_dates`` in table ``name`` (one transaction),
    with ``frame`` held to the table's schema (``conform``). The dates are values of the table's
    partition column (``snapshot_date``, or ``day`` for ``user_daily``); None overwrites the
    whole table.

    ``tag``, unique per write, is stored as the commit's ``userMetadata`` (default: one of its
    own). Where there is nothing to add and nothing to remove, an empty append carries it, so
    that the tag is committed whatever the rows.

    Returns
    -------
    int
        The rows this write committed (found in the table's history by its tag, so a
        concurrent writer's commit is never counted).
    """
    frame = conform(frame, config, name)
    (column,) = table_spec(config, name).partition_by
    must_commit, tag = tag is not None, tag or f"churn-spark replace {uuid.uuid4()}"
    writer = frame.write.format("delta").mode("overwrite").partitionBy(column).option("userMetadata", tag)
    if snapshot_dates is not None:
        dates = date_list(snapshot_dates)
        writer = writer.option("replaceWhere", f"{column} IN ({dates})" if dates else "false")
    _save(writer, config, name)
    # Nothing to add and nothing to remove is no commit at all: then no rows were written.
    mine = delta_table(frame.sparkSession, config, name).history(_HISTORY_SEARCHED).where(
        f"userMetadata = '{tag}'").first()
    if mine is None and must_commit:
        _save(frame.limit(0).write.format("delta").mode("append").option("userMetadata", tag), config, name)
    rows = int(mine["operationMetrics"].get("numOutputRows", 0)) if mine is not None else 0
    what = f"{len(set(snapshot_dates))} {column} value(s)" if snapshot_dates is not None else "the whole table"
    log.info("%s: wrote %d rows for %s", name, rows, what)
    return rows


# --- concurrent commits -----------------------------------------------------------------------

# Delta's commit conflicts (io.delta.exceptions.*). This delta-spark wheel ships no
# delta.exceptions module, so they reach Python as Py4JJavaError and are told by class name.
_CONFLICTS = frozenset((
    "ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
    "ConcurrentWriteException", "ConcurrentTransactionException", "MetadataChangedException",
    "ProtocolChangedException", "DeltaConcurrentModificationException",
))
COMMIT_ATTEMPTS = 6
_HISTORY_SEARCHED = 100  # commits looked through for a write's own tag
_T = TypeVar("_T")


def _committed(location: str, commit: Callable[[], _T]) -> _T:
    """``commit()``, retried with jittered backoff while it loses to a concurrent commit.

    Raises
    ------
    StorageError
        The table kept conflicting for ``COMMIT_ATTEMPTS`` attempts, or the disk refused the write.
    """
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return commit()
        except Exception as err:  # noqa: BLE001 - told apart below, re-raised unless recognised
            conflict = conflict_name(err)
            if conflict is None:
                failure = storage_failure(err)
                if failure is None:
                    raise
                raise StorageError(f"{location}: {failure}") from None
            if attempt == COMMIT_ATTEMPTS:
                raise StorageError(f"{location}: {COMMIT_ATTEMPTS} attempts lost to concurrent writers "
                                   f"({conflict}); run this job again when they are done") from None
            log.warning("%s: a concurrent commit won (%s); retrying (%d/%d)", location, conflict,
                        attempt, COMMIT_ATTEMPTS - 1)
            time.sleep(random.uniform(0.5, 1.5) * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def conflict_name(err: BaseException) -> str | None:
    """The Delta commit-conflict class behind ``err`` (e.g. ``ConcurrentAppendException``), or None."""
    names = [cls.__name__ for cls in type(err).__mro__]
    names += [str(java.getClass().getSimpleName()) for java in _java_causes(err)]
    return next((n for n in names if n in _CONFLICTS), None)


def _java_causes(err: BaseException) -> list:
    """The JVM throwable behind ``err`` (a Py4JJavaError or a converted PySpark error) and its
    causes, outermost first; empty for a Python error."""
    java = getattr(err, "java_exception", None) or getattr(err, "_origin", None)
    causes = []
    while java is not None and len(causes) < 16:  # bounded: a cause chain can loop
        causes.append(java)
        java = java.getCause()
    return causes


# --- the disk under a local lakehouse -----------------------------------------------------------

_FAILURES = {  # what the JVM or the OS says -> the line the user reads
    "no space left on device": "no space left on device",
    "disk quota exceeded": "disk quota exceeded",
    "read-only file system": "read-only file system",
    "permission denied": "permission denied",
    "accessdeniedexception": "permission denied",
    "not a directory": "a file stands where a folder should be",
    "parentnotdirectoryexception": "a file stands where a folder should be",
}
_ERRNOS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
           errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
           errno.EPERM: "permission denied", errno.ENOTDIR: "a file stands where a folder should be"}


def storage_failure(err: BaseException) -> str | None:
    """What ``err`` says about the disk in a few words (full, read-only, ...), or None when it
    is some other error."""
    if isinstance(err, OSError) and err.errno in _ERRNOS:
        return _ERRNOS[err.errno]
    text = " ".join([str(err), *(str(java.toString()) for java in _java_causes(err))]).lower()
    return next((words for marker, words in _FAILURES.items() if marker in text), None)


def check_location(config: Config, name: str, write: bool = False) -> None:
    """Refuse, in one line, a local lakehouse location that cannot hold ``name``.

    Parameters
    ----------
    name
        A table, or a folder under the lakehouse (``models``, ``reports``).
    write
        Also refuse a location whose nearest existing folder is not writable (``os.access``
        reports a read-only file system even to root, unlike permission bits).

    Raises
    ------
    StorageError
        A file stands at the location or above it, or (``write``) the disk is read-only or
        the folder not writable.
    """
    if config.storage.kind == "metastore" and name in TABLES:
        return
    path = storage.local_path(config.location(name))
    if path is None:
        return  # hdfs://, s3a://, abfss://: the store itself refuses what it cannot hold
    lakehouse = posixpath.dirname(path)
    existing = storage.nearest_existing(path)
    if not storage.isdir(existing):
        raise StorageError(f"lakehouse {lakehouse}: {existing} is a file, not a folder")
    if write and not storage.writable(existing):
        raise StorageError(f"lakehouse {lakehouse}: {existing} is not writable (read-only)")
