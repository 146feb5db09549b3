"""Foreign sources: map a dataset with another schema onto the contract by configuration.

A source is a YAML file in ``conf/sources/NAME.yaml``: for each contract column, a Spark
SQL expression over the source's columns (a bare column name is a rename), an optional
timestamp pattern, and optionally how user profiles are derived from the same rows.
The built-in source ``contract`` means the landing files already follow the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.errors import AnalysisException

from churn_spark.contract import EVENT_FIELDS, RECORD, SOURCE_FILE, USER_FIELDS
from churn_spark.errors import ConfigError, InputError

CONTRACT = "contract"
SOURCES_DIR = Path("conf/sources")


class UserMapping(BaseModel):
    """How user profiles are derived from the source's event rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    where: str | None = None
    columns: dict[str, str]

    @field_validator("columns")
    @classmethod
    def _known_user_columns(cls, columns: dict[str, str]) -> dict[str, str]:
        return _check_targets(columns, {f.name for f in USER_FIELDS})


class SourceMapping(BaseModel):
    """A foreign dataset's mapping onto the event contract."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = CONTRACT
    description: str = ""
    format: Literal["parquet", "jsonl", "csv"] | None = None
    timestamp_format: str | None = None
    events: dict[str, str] | None = None
    users: UserMapping | None = None

    @field_validator("events")
    @classmethod
    def _known_event_columns(cls, columns: dict[str, str] | None) -> dict[str, str] | None:
        return None if columns is None else _check_targets(columns, {f.name for f in EVENT_FIELDS})


def _check_targets(columns: dict[str, str], known: set[str]) -> dict[str, str]:
    unknown = sorted(set(columns) - known)
    if unknown:
        raise ValueError(f"not contract columns: {', '.join(unknown)}")
    return columns


def load_source(name: str, sources_dir: Path = SOURCES_DIR) -> SourceMapping:
    """The mapping called ``name`` (or stored at path ``name``); ``contract`` is the identity.

    Raises
    ------
    ConfigError
        The file is missing or invalid; the message names it.
    """
    if name == CONTRACT:
        return SourceMapping()
    path = Path(name) if name.endswith((".yaml", ".yml")) else sources_dir / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in sources_dir.glob("*.yaml"))
        raise ConfigError(f"--source {name}: no mapping at {path} (known: {', '.join([CONTRACT, *known])})")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        return SourceMapping.model_validate({"name": path.stem, **raw})
    except (yaml.YAMLError, ValidationError) as err:
        raise ConfigError(f"{path}: {_first_line(err)}") from None


def map_events(landed: DataFrame, source: SourceMapping) -> DataFrame:
    """Contract event columns (as text) computed from a landed source, plus record and file."""
    if source.events is None:
        return landed
    return _project(landed, source.events, [f.name for f in EVENT_FIELDS], source.name)


def map_users(landed: DataFrame, source: SourceMapping) -> DataFrame | None:
    """Contract user columns derived from the source's rows, or None if it has none."""
    if source.users is None:
        return None
    rows = landed.where(source.users.where) if source.users.where else landed
    return _project(rows, source.users.columns, [f.name for f in USER_FIELDS], source.name)


def _project(landed: DataFrame, columns: dict[str, str], targets: list[str], name: str) -> DataFrame:
    """Every contract column (unmapped ones null) as text, plus the record and its file."""
    text = [F.expr(columns[t]).cast("string").alias(t) if t in columns
            else F.lit(None).cast("string").alias(t) for t in targets]
    try:
        return landed.select(*text, RECORD, SOURCE_FILE)
    except AnalysisException as err:
        raise InputError(f"source {name}: mapping does not fit the files ({_first_line(err)})") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]
