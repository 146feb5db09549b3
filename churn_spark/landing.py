"""Reading landing files (JSON lines, CSV, Parquet), and refusing malformed files.

``read_landing`` returns the columns of the files, plus the original record
(``_record``) and the file it came from (``_source_file``), so that a row breaking the
contract can be quarantined exactly as it arrived. ``inspect_files`` is the one pass over
the landing data made before anything is written: it finds the columns, and raises
:class:`InputError` naming the first file that is not of the declared format at all.
"""

from __future__ import annotations

import os
import re

from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import DataFrame, DataFrameReader, SparkSession
from pyspark.sql import functions as F
from py4j.protocol import Py4JJavaError

from churn_spark.contract import RECORD, SOURCE_FILE
from churn_spark.errors import InputError

FORMATS = ("parquet", "jsonl", "csv")
_PARSED = "_parsed"
_SUFFIXES = ((".parquet", "parquet"), (".jsonl", "jsonl"), (".json", "jsonl"), (".ndjson", "jsonl"),
             (".csv", "csv"))
_FILE_URI = re.compile(r"((?:file|hdfs|s3a?|abfss?|gs|dbfs):/[^\s,;\]\)]+)")


def infer_format(path: str) -> str:
    """The landing format named by a path's extension, or by the files in a local folder.

    Raises
    ------
    InputError
        If neither names a supported format.
    """
    names = [path.rstrip("/")]
    if os.path.isdir(path):
        names = sorted(f for _, _, files in os.walk(path) for f in files if f[0] not in "._")
    for name in names:
        for suffix, fmt in _SUFFIXES:
            if name.lower().endswith(suffix):
                return fmt
    raise InputError(f"{path}: cannot tell the format from the file names; pass --format parquet|jsonl|csv")


def read_landing(spark: SparkSession, path: str, fmt: str, options: dict[str, str] | None = None) -> DataFrame:
    """The landing files under ``path``, plus each row's original record and source file.

    JSON lines come back parsed into a map (see ``jsonl_columns``); CSV columns are text;
    Parquet columns keep their types.

    Parameters
    ----------
    spark
        The session.
    path
        A file, a folder (read recursively) or a glob.
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
    reader = spark.read.option("recursiveFileLookup", "true")
    try:
        if fmt == "jsonl":
            return _read_jsonl(reader, path)
        if fmt == "csv":
            defaults = reader.options(header="true", inferSchema="false", escape='"')
            frame = defaults.options(**(options or {})).csv(path)
        else:
            frame = reader.parquet(path)
    except (AnalysisException, Py4JJavaError, PySparkException) as err:
        raise _file_error(err, path, fmt) from None
    originals = frame.columns
    return frame.select(
        *[F.col(f"`{c}`") for c in originals],
        F.to_json(F.struct(*[F.col(f"`{c}`") for c in originals])).alias(RECORD),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
    )


def _read_jsonl(reader: DataFrameReader, path: str) -> DataFrame:
    lines = reader.text(path).where(F.trim("value") != "")
    return lines.select(
        F.col("value").alias(RECORD),
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        F.from_json("value", "map<string,string>").alias(_PARSED),
    )


def jsonl_columns(landed: DataFrame, names: list[str]) -> DataFrame:
    """Turn parsed JSON lines into one text column per name (null where a line lacks it)."""
    return landed.select(
        *[F.col(_PARSED)[name].alias(name) for name in names], RECORD, SOURCE_FILE
    )


def inspect_files(landed: DataFrame, path: str, fmt: str) -> tuple[str, ...]:
    """Refuse the batch if a file is not ``fmt`` at all; return the columns the files have.

    A text file is malformed when it is not valid UTF-8 (binary), or, for JSON lines,
    when not one of its lines is a JSON object. A row that parses but breaks the contract
    is not a malformed file: it goes to quarantine.

    Raises
    ------
    InputError
        One line naming the malformed file.
    """
    binary = ~F.expr(f"is_valid_utf8({RECORD})") | F.col(RECORD).contains("\u0000") | \
        F.col(RECORD).contains("\ufffd")
    aggregates = [F.sum(binary.cast("int")).alias("binary")]
    if fmt == "jsonl":
        aggregates += [
            F.count(_PARSED).alias("parsed"),
            F.array_distinct(F.flatten(F.collect_set(F.map_keys(_PARSED)))).alias("keys"),
        ]
    try:
        per_file = landed.groupBy(SOURCE_FILE).agg(*aggregates).collect()
    except (Py4JJavaError, PySparkException) as err:
        raise _file_error(err, path, fmt) from None
    if not per_file:
        raise InputError(f"{path}: no {fmt} rows found")
    for stats in sorted(per_file, key=lambda r: r[SOURCE_FILE]):
        if stats["binary"] or (fmt == "jsonl" and stats["parsed"] == 0):
            raise InputError(f"{stats[SOURCE_FILE]}: not a {fmt} file (binary or unparseable content)")
    if fmt == "jsonl":
        columns = sorted({key for stats in per_file for key in stats["keys"]})
    else:
        columns = [c for c in landed.columns if c not in (RECORD, SOURCE_FILE)]
    return tuple(columns)


def _file_error(err: Exception, path: str, fmt: str) -> InputError:
    message = str(err)
    if "PATH_NOT_FOUND" in message or "Path does not exist" in message:
        return InputError(f"{path}: no such file or folder")
    uri = _FILE_URI.search(message)
    where = uri.group(1).rstrip(".'\"") if uri else path
    return InputError(f"{where}: not a readable {fmt} file ({message.strip().splitlines()[0][:160]})")
