"""Foreign sources: map a dataset with another schema onto the contract by configuration.

A source is a YAML file in ``conf/sources/NAME.yaml`` (``--source NAME``) or anywhere else
(``--source-file PATH``): how its text files are read (``read``), for each contract column
a Spark SQL expression over the source's columns (a bare column name is a rename), an
optional timestamp pattern, and how user profiles are derived. ``users`` is evaluated over
the ``--users`` file when one is given, else over the event rows; ``event_users`` derives
profiles from the event rows as well, which the profile file's values then override column by
column. The built-in source ``contract`` means the landing files already follow the contract.
Every key is described in the README's mapping reference (generated from these models by
``churn_spark.docs``); every expression is checked against ``churn_spark.expressions``
when the mapping is loaded, before any Spark session exists.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from churn_spark.contract import EVENT_FIELDS, USER_FIELDS
from churn_spark.errors import ConfigError
from churn_spark.expressions import check_expression

CONTRACT = "contract"
SOURCES_DIR = Path("conf/sources")
WHITESPACE = "whitespace"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _columns_model(name: str, fields: tuple, what: str) -> type[BaseModel]:
    """A model with one optional expression per contract column, so an unknown key is named."""
    return create_model(name, __base__=_Strict, __doc__=f"One Spark SQL expression per {what} column.",
                        **{f.name: (str | None, None) for f in fields})


EventColumns = _columns_model("EventColumns", EVENT_FIELDS, "event contract")
UserColumns = _columns_model("UserColumns", USER_FIELDS, "user contract")


class ReadOptions(_Strict):
    """How delimited text files (format ``csv``) are read."""

    delimiter: str = Field(",", description=(
        "one character (`tab` for a tab), or `whitespace`: fields split on runs of spaces and tabs, "
        "the last column keeping the rest of the line"), examples=["whitespace"])
    header: bool = Field(True, description="the first line of each file names the columns", examples=[False])
    columns: list[str] | None = Field(None, description=(
        "column names in file order; replace the header's names (required for `whitespace` without a "
        "header; without either, CSV columns are `_c0`, `_c1`, ...)"), examples=[["user", "item", "ts"]])
    encoding: str = Field("UTF-8", description="the files' text encoding (an ASCII-compatible charset)",
                          examples=["ISO-8859-1"])

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, delimiter: str) -> str:
        if delimiter in (WHITESPACE, "tab") or len(delimiter) == 1:
            return "\t" if delimiter == "tab" else delimiter
        raise ValueError(f"{delimiter!r}: expected one character, tab or whitespace")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"{encoding!r}: unknown encoding (e.g. UTF-8, ISO-8859-1, windows-1252)") from None
        return encoding

    @model_validator(mode="after")
    def _named(self) -> "ReadOptions":
        if self.delimiter == WHITESPACE and not self.header and not self.columns:
            raise ValueError("no column names: give columns (or header: true) for whitespace-separated files")
        return self


class EventUsers(_Strict):
    """User profiles derived from rows: a filter and one expression per user column."""

    where: str | None = Field(None, description="only the rows it keeps give profiles",
                              examples=["CustomerID IS NOT NULL"], json_schema_extra={"kind": "Spark SQL condition"})
    columns: UserColumns = Field(description=(
        "an expression over the rows for each user contract column (a bare name renames); unmapped ones are null"),
        examples=[{"user_id": "CAST(CustomerID AS STRING)", "region": "Country"}])


class UserMapping(EventUsers):
    """User profiles: over the ``--users`` file when one is given, else over the event rows."""

    format: Literal["parquet", "jsonl", "csv"] | None = Field(None, description=(
        "the profile files' format; `--users-format` overrides; default: csv when `users.read` is given, "
        "else the file extension, else `--format`"), examples=["parquet"])
    read: ReadOptions | None = Field(None, description="how the profile text files are read (as `read`)")


class SourceMapping(_Strict):
    """A foreign dataset's mapping onto the event contract."""

    name: str = Field(CONTRACT, description="stored in the `source` column of events and users",
                      examples=["online_retail"])
    description: str = Field("", description="free text")
    format: Literal["parquet", "jsonl", "csv"] | None = Field(None, description=(
        "the event files' format; `--format` overrides; default: csv when `read` is given, else the "
        "file extension"), examples=["parquet"])
    read: ReadOptions | None = Field(None, description="how the event text files are read (format csv)")
    timestamp_format: str | None = Field(None, description=(
        "a Spark datetime pattern for `event_time` and `signup_time` text; default ISO-8601"),
        examples=["yyyy-MM-dd HH:mm:ss"])
    events: EventColumns | None = Field(None, description=(
        "an expression over the source's columns for each event contract column (a bare name renames); "
        "unmapped ones are null"),
        examples=[{"user_id": "CAST(CustomerID AS STRING)", "event_time": "InvoiceDate"}])
    users: UserMapping | None = Field(None, description=(
        "user profiles, evaluated over the `--users` file when one is given, else over the event rows"))
    event_users: EventUsers | None = Field(None, description=(
        "user profiles from the event rows even when `--users` is given; per user and column the "
        "profile file's value wins, these fill in where it has none"))


def load_source(name: str, sources_dir: Path = SOURCES_DIR) -> SourceMapping:
    """The mapping called ``name`` in ``sources_dir``; ``contract`` is the identity.

    Raises
    ------
    ConfigError
        ``name`` is not a plain name (a path is refused: use :func:`load_source_file`), or
        the file is missing or invalid; one line naming the file, key and what was expected.
    """
    if name == CONTRACT:
        return SourceMapping()
    if not _NAME.fullmatch(name):
        raise ConfigError(f"--source {name!r}: expected the name of a mapping in {sources_dir}/ "
                          "(letters, digits, _ and -); for a file elsewhere use --source-file PATH")
    path = sources_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in sources_dir.glob("*.yaml"))
        raise ConfigError(f"--source {name}: no mapping at {path} (known: {', '.join([CONTRACT, *known])})")
    return load_source_file(path)


def load_source_file(path: str | Path) -> SourceMapping:
    """The mapping stored at ``path``, validated and with every expression checked.

    Raises
    ------
    ConfigError
        One line naming the file, the key and what was expected.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"--source-file {path}: cannot read the mapping ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys")
    try:
        mapping = SourceMapping.model_validate({"name": path.stem, **raw})
    except ValidationError as err:
        raise ConfigError(f"{path}: {_problem(err)}") from None
    check_mapping(mapping, str(path))
    return mapping


def check_mapping(mapping: SourceMapping, where: str) -> None:
    """Refuse a mapping whose expressions call a function off the allow-list.

    Raises
    ------
    ConfigError
        ``<where>: <key>: <function> is not allowed (...)``.
    """
    for key, expression in expressions(mapping):
        refused = check_expression(expression)
        if refused:
            raise ConfigError(f"{where}: {key}: {refused}")


def expressions(mapping: SourceMapping) -> list[tuple[str, str]]:
    """Every Spark SQL expression of a mapping, with its dotted key."""
    found = []
    if mapping.events is not None:
        found += [(f"events.{k}", v) for k, v in mapping.events.model_dump(exclude_none=True).items()]
    for section in ("users", "event_users"):
        users = getattr(mapping, section)
        if users is not None:
            found += [(f"{section}.where", users.where)] if users.where else []
            found += [(f"{section}.columns.{k}", v) for k, v in users.columns.model_dump(exclude_none=True).items()]
    return found


def _problem(err: ValidationError) -> str:
    """``key: what was expected`` for the first error."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = ", ".join(model.model_fields)
        if model in (EventColumns, UserColumns):
            return f"{key}: not a contract column (expected one of {known})"
        return f"{key}: unknown key (expected one of {known})"
    if first["type"] in ("model_type", "dict_type"):
        return f"{key}: expected a section of keys"
    if first["type"] == "string_type":
        return f"{key}: expected text (quote a Spark SQL expression in YAML)"
    message = first["msg"].removeprefix("Value error, ")
    return f"{key}: {message}"


def _model_at(loc: list[str]) -> type[BaseModel]:
    """The model that holds the keys at ``loc`` (a path of field names from the mapping)."""
    model: type[BaseModel] = SourceMapping
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            break
        inner = _model_in(field.annotation)
        if inner is None:
            break
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def event_format(mapping: SourceMapping, given: str | None) -> str | None:
    """The events' format when the flag or mapping fixes it (``None``: from the file names)."""
    return given or mapping.format or ("csv" if mapping.read is not None else None)


def users_format(mapping: SourceMapping, given: str | None) -> str | None:
    """The profile files' format when the flag or mapping fixes it (``None``: from the file names)."""
    users = mapping.users
    if given or users is None:
        return given
    return users.format or ("csv" if users.read is not None else None)
