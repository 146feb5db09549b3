"""Landing files -> Delta ``events`` and ``users``; rows that break the contract -> ``quarantine``.

One run is a batch. Everything that can refuse the batch (unreadable or malformed files,
a mapping that does not fit, missing required columns) is checked before the first
write. The writes are Delta MERGEs keyed so that running the same batch again, or again
after a crash part-way, leaves the same tables: events by ``event_id`` (insert only),
users by ``user_id`` (updated only when the profile changed), quarantine by a hash of the
record, ``first_events`` by ``user_id`` (the earliest event time kept). Each run appends its
counts to ``ingest_log``, with the files it read.

A landing file already ingested from the same source (the same URI, size and checksum in
``ingest_log``) is skipped before it is parsed, so re-running an ingest over a folder that
has gained a day of files reads that day only, and over an unchanged folder reads nothing.
The batch is then the new files: as if they had been delivered on their own. Where the
profile files are new but every event file was ingested before, the event files are read
again (their events are stored already; their rows give the profiles their event values).
``reingest=True`` reads every file, as the first time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.contract import (
    EVENT_FIELDS, RECORD, SOURCE_FILE, USER_FIELDS, VALUE_TYPES, validate_events, validate_users,
)
from churn_spark.errors import InputError
from churn_spark.features.recency import first_event_times
from churn_spark.landing import LandedFile, infer_format, inspect_files, jsonl_columns, landed_files, read_landing
from churn_spark.mapping import map_events, map_users, name_columns, reader_options
from churn_spark.sources import (
    CONTRACT, ReadOptions, SourceMapping, check_mapping, event_format, load_source, users_format,
)

_PRIORITY = "_priority"  # of a user profile row: 0 from the profile file, 1 from the event rows


@dataclass
class DatasetReport:
    """Counts of one dataset (events or users) in one batch; a row of ``ingest_log``."""

    dataset: str
    path: str
    format: str = ""
    rows_read: int = 0
    rows_written: int = 0
    duplicates_skipped: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0
    extra_columns: list[str] = field(default_factory=list)
    files: list[LandedFile] = field(default_factory=list)  # read by this batch
    files_skipped: int = 0  # ingested before, not read

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.quarantined_by_reason.items()))
        extra = f"; extra columns ignored: {', '.join(self.extra_columns)}" if self.extra_columns else ""
        skipped = f"; {self.files_skipped} file(s) ingested before, skipped" if self.files_skipped else ""
        return (f"{self.dataset}: read {self.rows_read}, written {self.rows_written}, "
                f"duplicates skipped {self.duplicates_skipped}, quarantined {self.quarantined}"
                f"{f' ({reasons})' if reasons else ''}{extra}{skipped}")


def ingest(
    spark: SparkSession,
    config: Config,
    events_path: str | Sequence[str],
    users_path: str | None = None,
    fmt: str | None = None,
    source: str | SourceMapping = CONTRACT,
    users_fmt: str | None = None,
    reingest: bool = False,
) -> list[DatasetReport]:
    """Ingest one batch of landing files into the lakehouse.

    Parameters
    ----------
    spark
        The session.
    config
        Where the tables are, and the contract's policy settings.
    events_path, users_path
        Landing files of events and (optionally) user profiles: a file, folder or glob (events:
        also a list of files, as the landing stream passes them).
    fmt, users_fmt
        ``parquet``, ``jsonl`` or ``csv`` of each input; by default from the source mapping,
        else each input's own file names (see :func:`input_formats`).
    source
        ``contract``, the name of a mapping in ``conf/sources``, or a loaded mapping. Its
        ``users`` section is evaluated over ``users_path`` when one is given, else over the
        event rows; its ``event_users`` section over the event rows, the profile file's
        values taking precedence column by column.
    reingest
        Read every landing file, also those ``ingest_log`` records as ingested already.

    Returns
    -------
    list of DatasetReport
        One per dataset ingested, as appended to ``ingest_log``.

    Raises
    ------
    InputError, ConfigError
        Before anything is written, naming the file or setting at fault.
    """
    mapping = source if isinstance(source, SourceMapping) else load_source(source)
    check_mapping(mapping, f"source {mapping.name}")  # also a mapping built in code, not loaded from a file
    events_fmt, profiles_fmt = input_formats(mapping, events_path, users_path, fmt, users_fmt, config)
    batch = _Batch(str(uuid.uuid4()), dt.datetime.now(dt.timezone.utc), mapping.name)
    events_files, users_files = _new_files(spark, config, mapping.name, events_path, users_path, reingest)
    events_files.format = events_fmt
    if users_files is not None:
        users_files.format = profiles_fmt or ""
    if not events_files.files and not (users_files and users_files.files):
        # Nothing new: no file is parsed and no table but the log is written.
        reports = [r for r in (events_files, users_files) if r is not None]
        tables.append(_log_frame(spark, reports, batch), config, "ingest_log")
        return reports
    if not events_files.files:  # new profiles only: their event rows are read again
        events_files.files, events_files.files_skipped = landed_files(spark, events_path), 0

    events_landed, events_report = _land(spark, events_files, mapping.read), events_files
    events_text = _to_contract(events_landed, mapping, events_report)
    users_text, users_report = _profiles(spark, mapping, events_landed, events_report, users_files, profiles_fmt)

    validated = {"events": validate_events(events_text, batch.time, config.ingest,
                                           mapping.timestamp_format)}
    reports = {"events": events_report}
    if users_text is not None and users_report is not None:
        validated["users"] = validate_users(users_text, config.ingest, mapping.timestamp_format)
        reports["users"] = users_report
    elif users_files is not None:  # every profile file ingested before
        reports["users"] = users_files
    for frame in validated.values():
        frame.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # Every row of the batch is typed and counted before the first write.
        valid = {name: _count_reasons(frame, reports[name], mapping.name)
                 for name, frame in validated.items()}
        for name, frame in validated.items():
            if reports[name].quarantined:
                _quarantine(spark, config, frame, name, batch)
            else:  # a clean batch: no MERGE (a few Spark jobs) to insert nothing
                tables.ensure_table(spark, config, "quarantine")
        _write_events(spark, config, validated["events"], batch, reports["events"], valid["events"])
        _write_first_events(spark, config, validated["events"])
        if "users" in validated:
            _write_users(spark, config, validated["users"], batch, reports["users"], valid["users"])
    finally:
        for frame in validated.values():
            frame.unpersist()
    tables.append(_log_frame(spark, list(reports.values()), batch), config, "ingest_log")
    return list(reports.values())


def input_formats(
    mapping: SourceMapping, events_path: str | Sequence[str], users_path: str | None = None, fmt: str | None = None,
    users_fmt: str | None = None, config: Config | None = None,
) -> tuple[str, str | None]:
    """The format of each input, each decided on its own (no Spark needed).

    Events: ``fmt``, else the mapping's ``format`` (csv when it has ``read``), else the event
    files' names. Profiles: ``users_fmt``, else the mapping's ``users.format`` (csv when it has
    ``users.read``), else the profile files' names, else ``fmt``.

    Raises
    ------
    InputError
        The events' format cannot be told (the profile file falls back to ``fmt`` first).
    """
    first = events_path if isinstance(events_path, str) else events_path[0]
    events = event_format(mapping, fmt) or infer_format(first, config)
    if users_path is None:
        return events, None
    profiles = users_format(mapping, users_fmt)
    if profiles is None:
        try:
            profiles = infer_format(users_path, config)
        except InputError:
            if fmt is None:
                raise InputError(f"{users_path}: cannot tell the format from the file names; "
                                 "pass --users-format parquet|jsonl|csv") from None
            profiles = fmt
    return events, profiles


@dataclass(frozen=True)
class _Batch:
    id: str
    time: dt.datetime  # timezone-aware UTC
    source: str


def _new_files(
    spark: SparkSession, config: Config, source: str, events_path: str | Sequence[str], users_path: str | None,
    reingest: bool,
) -> tuple[DatasetReport, DatasetReport | None]:
    """A report per input holding the files this batch reads: those not ingested before from
    ``source`` (all of them with ``reingest``), and the count of those skipped."""
    tables.add_columns(spark, config, "ingest_log", ("files", "files_skipped"))
    seen: set[tuple[str, str, int, str]] = set()
    if not reingest and tables.table_exists(spark, config, "ingest_log"):
        logged = tables.read_table(spark, config, "ingest_log").where(F.col("source") == source)
        seen = {(r["dataset"], r["file"]["path"], r["file"]["size"], r["file"]["checksum"])
                for r in logged.select("dataset", F.explode("files").alias("file")).collect()}
    reports = []
    for dataset, path in (("events", events_path), ("users", users_path)):
        if path is None:
            reports.append(None)
            continue
        listed = landed_files(spark, path)
        new = [f for f in listed if (dataset, f.path, f.size, f.checksum) not in seen]
        reports.append(DatasetReport(dataset, _shown(path), files=new, files_skipped=len(listed) - len(new)))
    return reports[0], reports[1]


def _shown(path: str | Sequence[str]) -> str:
    """A path, or a list of files, as reports and messages name it."""
    return path if isinstance(path, str) else ", ".join(path)


def _land(spark: SparkSession, report: DatasetReport, read: ReadOptions | None = None) -> DataFrame:
    """Read and check the files of ``report`` (in its format); every column is kept, as landed."""
    fmt = report.format
    files = [f.path for f in report.files]
    landed = read_landing(spark, files, fmt, reader_options(read) if fmt == "csv" else None)
    if fmt == "csv":
        landed = name_columns(landed, read)
    columns = inspect_files(landed, report.path, fmt)
    if fmt == "jsonl":
        landed = jsonl_columns(landed, list(columns))
    return landed


def _profiles(
    spark: SparkSession, mapping: SourceMapping, events_landed: DataFrame, events: DatasetReport,
    users_files: DatasetReport | None, fmt: str | None,
) -> tuple[DataFrame | None, DatasetReport | None]:
    """User profiles as contract text: from the profile file, the event rows, or both.

    Each row carries its precedence (``_PRIORITY``: 0 the profile file, 1 the event rows);
    ``_one_profile`` keeps, per user and column, the value of the lowest that has one.
    """
    frames, report = [], None
    if users_files is not None and users_files.files and fmt is not None:
        read = mapping.users.read if mapping.users is not None else None
        landed, report = _land(spark, users_files, read), users_files
        frames.append(_to_contract(landed, mapping, report).withColumn(_PRIORITY, F.lit(0)))
    from_events = mapping.event_users
    if from_events is None and users_files is None:
        from_events = mapping.users  # a foreign source carrying profiles on its event rows
    if from_events is not None:
        frames.append(map_users(events_landed, from_events, mapping.name).withColumn(_PRIORITY, F.lit(1)))
        report = report or users_files or DatasetReport("users", events.path, events.format)
        report.format = report.format or events.format
    if not frames or report is None:
        return None, None
    profiles = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    return profiles, report


def _to_contract(landed: DataFrame, mapping: SourceMapping, report: DatasetReport) -> DataFrame:
    """The contract's columns as text: mapped from a foreign source, or picked by name."""
    if mapping.name != CONTRACT:
        if report.dataset == "events":
            return map_events(landed, mapping)
        if mapping.users is None:
            raise InputError(f"source {mapping.name}: has no users mapping for {report.path}")
        return map_users(landed, mapping.users, mapping.name)
    fields = EVENT_FIELDS if report.dataset == "events" else USER_FIELDS
    names = [f.name for f in fields]
    carried = [c for c in (RECORD, SOURCE_FILE, VALUE_TYPES) if c in landed.columns]
    present = [c for c in landed.columns if c not in carried]
    missing = [f.name for f in fields if f.required == "yes" and f.name not in present]
    if missing:
        raise InputError(f"{report.path}: {report.dataset} files lack required column(s) {', '.join(missing)}")
    report.extra_columns = [c for c in present if c not in names]
    text = [F.col(n).cast("string") if n in present else F.lit(None).cast("string").alias(n) for n in names]
    return landed.select(*text, *carried)


def _write_events(
    spark: SparkSession, config: Config, events: DataFrame, batch: _Batch, report: DatasetReport,
    valid: int,
) -> None:
    """Insert the batch's new valid events; an event_id already stored is skipped."""
    staged = _first_per_key(events.where(F.size("reasons") == 0), "event_id").select(
        *[f.name for f in EVENT_FIELDS],
        F.lit(batch.source).alias("source"),
        F.lit(batch.time).alias("ingested_at"),
        F.to_date("event_time").alias("event_date"),
    )
    merged = tables.merge(spark, config, "events", staged, "event_id")
    report.rows_written = merged["num_inserted_rows"]
    report.duplicates_skipped = valid - report.rows_written


def _write_first_events(spark: SparkSession, config: Config, events: DataFrame) -> None:
    """Keep per user the time of their first event ever: a MERGE taking the minimum.

    Where the table does not exist yet (a new lakehouse, or one ingested before it existed) it
    is built from the whole events table, this batch included, so that it is complete whenever
    it exists; re-running a batch leaves it as it is.
    """
    if tables.table_exists(spark, config, "first_events"):
        staged = first_event_times(_first_per_key(events.where(F.size("reasons") == 0), "event_id"))
    else:
        staged = first_event_times(tables.read_table(spark, config, "events"))
    tables.merge(spark, config, "first_events", staged, "user_id",
                 update_when="s.first_event_time < t.first_event_time")


def _write_users(
    spark: SparkSession, config: Config, users: DataFrame, batch: _Batch, report: DatasetReport,
    valid: int,
) -> None:
    """Upsert the batch's valid profiles; an unchanged profile is left as it is."""
    profile = [f.name for f in USER_FIELDS]
    staged = _one_profile(users.where(F.size("reasons") == 0)).select(
        *profile, F.lit(batch.source).alias("source"), F.lit(batch.time).alias("updated_at")
    )
    changed = " OR ".join(f"NOT (t.{c} <=> s.{c})" for c in [*profile, "source"])
    merged = tables.merge(spark, config, "users", staged, "user_id", update_when=changed)
    report.rows_written = merged["num_inserted_rows"] + merged["num_updated_rows"]
    report.duplicates_skipped = valid - report.rows_written


def _count_reasons(validated: DataFrame, report: DatasetReport, source: str) -> int:
    """Fill the report's read and quarantine counts in one pass; return the valid rows.

    This is the first action over the batch, so a mapping that fails on some row (a
    cast under ANSI mode, say) is refused here, before anything is written.
    """
    tags = F.when(F.size("reasons") == 0, F.array(F.lit("_rows"), F.lit("_valid"))).otherwise(
        F.concat(F.array(F.lit("_rows")), F.col("reasons"))
    )
    try:
        rows = validated.select(F.explode(tags).alias("tag")).groupBy("tag").count().collect()
    except PySparkException as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"{report.path}: source {source} cannot read these rows ({first})") from None
    counts = {r["tag"]: r["count"] for r in rows}
    report.rows_read = counts.pop("_rows", 0)
    valid = counts.pop("_valid", 0)
    report.quarantined = report.rows_read - valid
    report.quarantined_by_reason = counts
    return valid


def _quarantine(
    spark: SparkSession, config: Config, validated: DataFrame, dataset: str, batch: _Batch
) -> None:
    """Merge the rows that break the contract into ``quarantine``, each stored once."""
    rejected = validated.where(F.size("reasons") > 0).select(
        F.sha2(F.concat_ws("\u0001", F.lit(dataset), SOURCE_FILE, RECORD), 256).alias("quarantine_id"),
        F.lit(dataset).alias("dataset"),
        F.lit(batch.source).alias("source"),
        F.col(SOURCE_FILE).alias("source_file"),
        F.col(RECORD).alias("record"),
        "reasons",
        F.lit(batch.id).alias("batch_id"),
        F.lit(batch.time).alias("batch_time"),
    ).dropDuplicates(["quarantine_id"])
    tables.merge(spark, config, "quarantine", rejected, "quarantine_id")


def _first_per_key(frame: DataFrame, *key: str) -> DataFrame:
    """One row per ``key``: the same one on every run (first by file, then record text)."""
    rank = F.row_number().over(Window.partitionBy(*key).orderBy(SOURCE_FILE, RECORD))
    return frame.withColumn("_rank", rank).where("_rank = 1").drop("_rank")


def _one_profile(users: DataFrame) -> DataFrame:
    """One profile per user: per column, the profile file's value, else the event rows'.

    Within each source the first row (by file, then record text) stands, as for events.
    """
    first = _first_per_key(users, "user_id", _PRIORITY)
    ordered = Window.partitionBy("user_id").orderBy(_PRIORITY).rowsBetween(
        Window.unboundedPreceding, Window.unboundedFollowing)
    filled = [F.first(f.name, ignorenulls=True).over(ordered).alias(f.name) if f.name != "user_id"
              else F.col("user_id") for f in USER_FIELDS]
    rank = F.row_number().over(Window.partitionBy("user_id").orderBy(_PRIORITY))
    return first.select(*filled, rank.alias("_rank")).where("_rank = 1").drop("_rank")


def _log_frame(spark: SparkSession, reports: list[DatasetReport], batch: _Batch) -> DataFrame:
    rows = [
        (batch.id, batch.time, r.dataset, batch.source, r.path, r.format, r.rows_read, r.rows_written,
         r.duplicates_skipped, r.quarantined, r.quarantined_by_reason, r.extra_columns,
         [(f.path, f.size, f.checksum) for f in r.files], r.files_skipped)
        for r in reports
    ]
    return spark.createDataFrame(rows, tables.SPECS["ingest_log"].schema)
