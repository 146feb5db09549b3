"""Applying a source mapping (``churn_spark.sources``) to landed rows.

``reader_options`` turns a mapping's ``read:`` section into CSV reader options;
``name_columns`` then names the columns (and splits whitespace-separated lines);
``map_events`` and ``map_users`` project the landed rows onto the contract's columns, as text.
"""

from __future__ import annotations

import re

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from churn_spark.contract import EVENT_FIELDS, RECORD, SOURCE_FILE, USER_FIELDS
from churn_spark.errors import InputError
from churn_spark.sources import WHITESPACE, EventUsers, ReadOptions, SourceMapping

# Whitespace-separated files are read one line per row: a separator no text line holds.
_LINE = "\u0001\u0002\u0003"


def reader_options(read: ReadOptions | None) -> dict[str, str]:
    """CSV reader options for a ``read:`` section (empty: comma-separated with a header)."""
    if read is None:
        return {}
    options = {"header": str(read.header).lower(), "encoding": read.encoding}
    if read.delimiter == WHITESPACE:
        return {**options, "sep": _LINE, "quote": ""}  # no quoting: each line is one field
    return {**options, "sep": read.delimiter}


def name_columns(landed: DataFrame, read: ReadOptions | None) -> DataFrame:
    """The landed CSV columns named as ``read`` says; whitespace lines split into fields.

    A whitespace-separated line is trimmed and split on runs of spaces and tabs into as
    many fields as there are names (the last keeps the rest of the line; missing ones are
    null); blank lines are skipped, and the line itself is the row's original record.
    """
    if read is None:
        return landed
    data = [c for c in landed.columns if c not in (RECORD, SOURCE_FILE)]
    if read.delimiter != WHITESPACE:
        names = list(read.columns or data)
        named = [F.col(f"`{c}`").alias(names[i]) if i < len(names) else F.col(f"`{c}`")
                 for i, c in enumerate(data)]
        absent = [F.lit(None).cast("string").alias(n) for n in names[len(data):]]
        return landed.select(*named, *absent, RECORD, SOURCE_FILE)
    names = list(read.columns or re.split(r"\s+", data[0].strip()))
    line = F.concat_ws(_LINE, *[F.col(f"`{c}`") for c in data])
    fields = F.split(F.regexp_replace(line, r"^\s+|\s+$", ""), r"\s+", len(names))
    return landed.where(F.trim(F.regexp_replace(line, r"\s", " ")) != "").select(
        *[F.get(fields, i).alias(name) for i, name in enumerate(names)],
        line.alias(RECORD), SOURCE_FILE)


def map_events(landed: DataFrame, source: SourceMapping) -> DataFrame:
    """Contract event columns (as text) computed from a landed source, plus record and file."""
    if source.events is None:
        return landed
    return _project(landed, source.events.model_dump(exclude_none=True),
                    [f.name for f in EVENT_FIELDS], source.name)


def map_users(landed: DataFrame, users: EventUsers, name: str) -> DataFrame:
    """Contract user columns (as text) derived from landed rows by one profile mapping."""
    return _project(landed, users.columns.model_dump(exclude_none=True), [f.name for f in USER_FIELDS], name,
                    users.where)


def _project(
    landed: DataFrame, columns: dict[str, str], targets: list[str], name: str, where: str | None = None
) -> DataFrame:
    """Every contract column (unmapped ones null) as text, plus the record and its file."""
    text = [F.expr(columns[t]).cast("string").alias(t) if t in columns
            else F.lit(None).cast("string").alias(t) for t in targets]
    try:
        rows = landed.where(where) if where else landed
        return rows.select(*text, RECORD, SOURCE_FILE)
    except AnalysisException as err:
        first = str(err).strip().splitlines()[0]
        raise InputError(f"source {name}: mapping does not fit the files ({first})") from None
