"""Reading landing files (JSON lines, CSV, Parquet), and refusing malformed files.

``read_landing`` returns the columns of the files, plus the original record
(``_record``), the file it came from (``_source_file``) and, for JSON lines and Parquet,
the type each value arrived as (``_value_types``), so that a row breaking the contract can
be quarantined exactly as it arrived. Text is read as UTF-8, an undecodable byte as U+FFFD
(the contract quarantines that row as ``bad_encoding``). CSV is read as RFC 4180: a quoted
field may hold the delimiter, doubled quotes and line breaks (CRLF inside quotes is read as
``\\n``); a file is then read whole by one task. ``inspect_files`` is the one pass over the
landing data made before anything is written: it finds the columns, and raises
:class:`InputError` naming the first file that is not of the declared format at all.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import Column, DataFrame, DataFrameReader, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType, BinaryType, BooleanType, DataType, DateType, MapType, NumericType, StructType, TimestampNTZType,
    TimestampType,
)
from py4j.protocol import Py4JJavaError

from churn_spark import storage
from churn_spark.config import Config
from churn_spark.contract import RECORD, SOURCE_FILE, VALUE_TYPES, undecodable
from churn_spark.errors import InputError

FORMATS = ("parquet", "jsonl", "csv")
_PARSED = "_parsed"
_VARIANTS = "_variants"
_SUFFIXES = ((".parquet", "parquet"), (".jsonl", "jsonl"), (".json", "jsonl"), (".ndjson", "jsonl"),
             (".csv", "csv"))
_FILE_URI = re.compile(r"((?:file|hdfs|s3a?|abfss?|gs|dbfs):/[^\s,;\]\)]+)")


def infer_format(path: str, config: Config | None = None) -> str:
    """The landing format named by a path's extension, or by the files in a folder (a path or
    URI; ``config`` gives the object store's endpoint and keys).

    Raises
    ------
    InputError
        If neither names a supported format.
    """
    names = [path.rstrip("/")]
    if storage.isdir(path, config):
        names = [posixpath.basename(f) for f in storage.find(path, config)]
        names = sorted(f for f in names if f[0] not in "._")
    for name in names:
        for suffix, fmt in _SUFFIXES:
            if name.lower().endswith(suffix):
                return fmt
    raise InputError(f"{path}: cannot tell the format from the file names; pass --format parquet|jsonl|csv")


@dataclass(frozen=True, order=True)
class LandedFile:
    """One landing file as ``ingest_log`` records it: its URI, size in bytes and checksum."""

    path: str
    size: int
    checksum: str


# Files up to this size are fingerprinted by their content's SHA-256 (Spark reads a file's
# content into one value, at most 2 GiB); a larger one by its modification time.
HASHED_BYTES_MAX = 1 << 30


def landed_files(spark: SparkSession, path: str | Sequence[str]) -> list[LandedFile]:
    """The files under ``path`` (or the list of files) that the landing readers read, each with its size and checksum.

    Listed and hashed by Spark's ``binaryFile`` source, so any file system Spark reads works and
    the content is hashed by the executors, not on the driver; files the readers skip (names
    starting with ``_`` or ``.``) are skipped here too.

    Raises
    ------
    InputError
        The path does not exist.
    """
    reader = spark.read.format("binaryFile").option("recursiveFileLookup", "true")
    try:
        listed = reader.load(path).select("path", "length", "modificationTime").collect()
        # A filter on length is applied before a file's content is read.
        hashed = dict(reader.load(path).where(F.col("length") <= HASHED_BYTES_MAX)
                      .select("path", F.sha2("content", 256)).collect())
    except (AnalysisException, Py4JJavaError, PySparkException) as err:
        raise _file_error(err, path if isinstance(path, str) else ", ".join(path), "landing") from None
    return sorted(
        LandedFile(r["path"], r["length"], hashed.get(r["path"]) or f"modified {r['modificationTime'].isoformat()}")
        for r in listed
    )


def read_landing(
    spark: SparkSession, path: str | Sequence[str], fmt: str, options: dict[str, str] | None = None,
) -> DataFrame:
    """The landing files under ``path``, plus each row's original record and source file.

    JSON lines come back parsed into a map (see ``jsonl_columns``); CSV columns are text;
    Parquet columns keep their types. JSON lines and Parquet also give ``VALUE_TYPES``.

    Parameters
    ----------
    spark
        The session.
    path
        A file, a folder (read recursively) or a glob; or a list of files.
    fmt
        One of ``FORMATS``.
    options
        CSV reader options that replace the defaults (a mapping's ``read:`` section, see
        ``churn_spark.mapping.reader_options``).

    Raises
    ------
    InputError
        The path does not exist, or (Parquet) a file is not Parquet.
    """
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    paths = [path] if isinstance(path, str) else list(path)
    shown = path if isinstance(path, str) else ", ".join(paths)
    reader = spark.read.option("recursiveFileLookup", "true")
    try:
        if fmt == "jsonl":
            return _read_jsonl(reader, paths)
        if fmt == "csv":
            # RFC 4180: a quoted field may hold newlines, CRLF and doubled quotes.
            defaults = reader.options(header="true", inferSchema="false", escape='"', multiLine="true")
            frame = defaults.options(**(options or {})).csv(paths)
        else:
            frame = reader.parquet(*paths)
    except (AnalysisException, Py4JJavaError, PySparkException) as err:
        raise _file_error(err, shown, fmt) from None
    originals = frame.columns
    types = [_parquet_types(frame)] if fmt == "parquet" else []
    return frame.select(
        *[F.col(f"`{c}`") for c in originals],
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in originals])).alias(RECORD),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        *types,
    )


def _read_jsonl(reader: DataFrameReader, paths: list[str]) -> DataFrame:
    """Each line's text and its values parsed as variants (the JSON types kept).

    A line over the variant size limit (16 MiB) is parsed as text only (``_PARSED``): its
    values' types are not known.
    """
    lines = reader.text(paths).select(
        F.make_valid_utf8("value").alias(RECORD), F.col("_metadata.file_path").alias(SOURCE_FILE))
    parsed = lines.where(F.trim(RECORD) != "").withColumn(_VARIANTS, F.from_json(RECORD, "map<string,variant>"))
    return parsed.withColumn(_PARSED, F.when(F.col(_VARIANTS).isNull(), F.from_json(RECORD, "map<string,string>")))


def _json_type(value: Column) -> Column:
    """The JSON type of a variant parsed from JSON: string, number, boolean, object, array, null."""
    schema = F.schema_of_variant(value)
    return (F.when(value.isNull(), F.lit(None)).when(schema == "STRING", "string")
            .when(schema == "BOOLEAN", "boolean").when(schema.startswith("OBJECT"), "object")
            .when(schema.startswith("ARRAY"), "array").when(schema == "VOID", "null").otherwise("number"))


def _parquet_types(frame: DataFrame) -> Column:
    """The type of each Parquet column, named as ``_json_type`` names JSON types."""
    def name(dtype: DataType) -> str:
        kinds = ((StructType, "object"), (MapType, "object"), (ArrayType, "array"), (BooleanType, "boolean"),
                 (NumericType, "number"), (BinaryType, "binary"),
                 ((TimestampType, TimestampNTZType, DateType), "timestamp"))
        return next((kind for types, kind in kinds if isinstance(dtype, types)), "string")

    pairs = [F.lit(x) for f in frame.schema.fields for x in (f.name, name(f.dataType))]
    return F.create_map(*pairs).alias(VALUE_TYPES)


def jsonl_columns(landed: DataFrame, names: list[str]) -> DataFrame:
    """Turn parsed JSON lines into one text column per name (null where a line lacks it),
    plus ``VALUE_TYPES``: each name's JSON type."""
    variants = F.col(_VARIANTS)
    types = F.create_map(*[x for name in names for x in (F.lit(name), _json_type(variants[name]))])
    return landed.select(
        *[F.coalesce(variants[name].cast("string"), F.col(_PARSED)[name]).alias(name) for name in names],
        RECORD, SOURCE_FILE, types.alias(VALUE_TYPES),
    )


def inspect_files(landed: DataFrame, path: str, fmt: str) -> tuple[str, ...]:
    """Refuse the batch if a file is not ``fmt`` at all; return the columns the files have.

    A text file is malformed when not one of its rows is UTF-8 text (binary) or, for JSON
    lines, when not one of its lines is UTF-8 text holding a JSON object. A row that does
    not decode or parse, in a file where others do, is not a malformed file: it goes to
    quarantine (``bad_encoding``, or ``missing_required``), as a row breaking the contract.

    Raises
    ------
    InputError
        One line naming the malformed file.
    """
    good = ~undecodable(F.col(RECORD))
    if fmt == "jsonl":
        good = good & (F.col(_VARIANTS).isNotNull() | F.col(_PARSED).isNotNull())
    aggregates = [F.sum(good.cast("int")).alias("good")]
    if fmt == "jsonl":
        keys = F.collect_set(F.when(good, F.coalesce(F.map_keys(_VARIANTS), F.map_keys(_PARSED))))
        aggregates.append(F.array_distinct(F.flatten(keys)).alias("keys"))
    try:
        per_file = landed.groupBy(SOURCE_FILE).agg(*aggregates).collect()
    except (Py4JJavaError, PySparkException) as err:
        raise _file_error(err, path, fmt) from None
    if not per_file:
        raise InputError(f"{path}: no {fmt} rows found")
    for stats in sorted(per_file, key=lambda r: r[SOURCE_FILE]):
        if stats["good"] == 0:
            raise InputError(f"{stats[SOURCE_FILE]}: not a {fmt} file (binary or unparseable content)")
    if fmt == "jsonl":
        columns = sorted({key for stats in per_file for key in stats["keys"]})
    else:
        columns = [c for c in landed.columns if c not in (RECORD, SOURCE_FILE, VALUE_TYPES)]
    return tuple(columns)


def _file_error(err: Exception, path: str, fmt: str) -> InputError:
    message = str(err)
    if "PATH_NOT_FOUND" in message or "Path does not exist" in message:
        return InputError(f"{path}: no such file or folder")
    uri = _FILE_URI.search(message)
    where = uri.group(1).rstrip(".'\"") if uri else path
    return InputError(f"{where}: not a readable {fmt} file ({message.strip().splitlines()[0][:160]})")
