"""README tables generated from the code that owns them (a test keeps the README in step)."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from churn_spark.config import IngestConfig
from churn_spark.contract import (
    ACCEPTED_TYPES, EVENT_FIELDS, EVENT_REASONS, USER_FIELDS, USER_REASONS, ContractField,
)

MAPPING_EXAMPLES = (
    ("One row per order line (UCI Online Retail, Parquet)", "conf/sources/online_retail.yaml",
     "--events ../shared/data/online_retail/onlineretail.parquet --source online_retail"),
    ("A purchase log without an order id (whitespace-separated, no header)",
     "conf/sources/examples/purchase_log.yaml",
     "--events purchases.log --source-file conf/sources/examples/purchase_log.yaml"),
    ("Transactions with a separate profile file (Parquet)", "conf/sources/examples/retailer.yaml",
     "--events transactions.parquet --users households.parquet "
     "--source-file conf/sources/examples/retailer.yaml"),
)


def _table(fields: tuple[ContractField, ...]) -> str:
    lines = ["| column | type | required | rule |", "|---|---|---|---|"]
    lines += [f"| {f.name} | {f.dtype} | {f.required} | {f.rule} |" for f in fields]
    return "\n".join(lines)


def contract_markdown() -> str:
    """The event and user contract as the README shows it."""
    return "\n".join([
        "Events, one row per event:",
        "",
        _table(EVENT_FIELDS),
        "",
        "Users, one row per user:",
        "",
        _table(USER_FIELDS),
        "",
        "Reason codes in `quarantine.reasons`: events "
        + ", ".join(f"`{c}`" for c in EVENT_REASONS)
        + "; users " + ", ".join(f"`{c}`" for c in USER_REASONS) + ".",
        "",
        "A value in JSON lines or Parquet must arrive as a type its column accepts, else the row is",
        "`bad_type` (CSV values are all text; a source mapping's expressions see every value as text):",
        "",
        "| contract type | accepted as |",
        "|---|---|",
        *[f"| {dtype} | {', '.join(kinds)} |" for dtype, kinds in ACCEPTED_TYPES.items()],
        "",
        "A boolean, an object or an array is never accepted (`{\"id\": \"u5\"}` is not a user id);",
        "`timestamp` means a Parquet timestamp or date.",
        f"A text value longer than `ingest.max_text_chars` ({IngestConfig().max_text_chars:,} by default) "
        "is `text_too_long`.",
        "A record holding a byte that is not UTF-8 (or a NUL) is `bad_encoding`; the other rows of its",
        "file are kept.",
    ])


def features_markdown() -> str:
    """The feature catalogue as the README shows it, family by family."""
    from churn_spark.config import FeaturesConfig
    from churn_spark.features import catalogue, family_of

    settings = FeaturesConfig()
    lines = ["| family | feature | type | window (days) | meaning | none |", "|---|---|---|---|---|---|"]
    for f in catalogue(settings):
        window = "" if f.window is None else str(f.window)
        lines.append(f"| {family_of(f, settings)} | `{f.name}` | {f.dtype} | {window} | {f.meaning} | {f.none} |")
    return "\n".join(lines)


def mapping_markdown() -> str:
    """Every key of a source mapping (type, default, meaning, example), from its models."""
    from churn_spark.sources import SourceMapping

    lines = ["| key | type | default | meaning | example |", "|---|---|---|---|---|"]
    lines += _model_rows(SourceMapping, "")
    return "\n".join(lines)


def _model_rows(model: type[BaseModel], prefix: str) -> list[str]:
    from churn_spark.sources import EventColumns, UserColumns

    rows = []
    for name, field in model.model_fields.items():
        key, inner = f"{prefix}{name}", _model_of(field.annotation)
        if inner in (EventColumns, UserColumns):
            which = "event" if inner is EventColumns else "user"
            columns = ", ".join(inner.model_fields)
            rows.append(_row(f"{key}.<{which} column>", "Spark SQL expression", "null",
                             f"{field.description}; columns: {columns}", field.examples))
        elif inner is not None:
            rows.append(_row(key, "section", "none", field.description or inner.__doc__ or "", None))
            rows += _model_rows(inner, f"{key}.")
        else:
            default = "file name" if key == "name" else _inline(field.default)
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            kind = str(extra.get("kind") or _type_name(field.annotation))
            rows.append(_row(key, kind, default, field.description or "", field.examples))
    return rows


def _row(key: str, kind: str, default: str, meaning: str, examples: list | None) -> str:
    example = f"`{_inline(examples[0])}`" if examples else ""
    cells = [f"`{key}`", kind, default, meaning, example]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return " or ".join(str(a) for a in args)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _type_name(args[0]) if len(args) == 1 else " or ".join(_type_name(a) for a in args)
    if typing.get_origin(annotation) is list:
        return f"list of {_type_name(args[0])}"
    return {str: "text", bool: "true or false", int: "integer"}.get(annotation, str(annotation))


def _inline(value: Any) -> str:
    if value is None:
        return "null"
    if value == "":
        return "empty"
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000)
    return text.strip().removesuffix("...").strip()


def mapping_examples_markdown() -> str:
    """The worked mapping examples, each a file that the tests load and ingest."""
    parts = []
    for title, path, arguments in MAPPING_EXAMPLES:
        parts += [f"**{title}**: `{path}`", "", "```yaml", Path(path).read_text().rstrip("\n"), "```", "",
                  "```bash", f"churn-spark ingest {arguments}", "```", ""]
    return "\n".join(parts).rstrip("\n")


if __name__ == "__main__":
    print(contract_markdown())
    print()
    print(features_markdown())
    print()
    print(mapping_markdown())
    print()
    print(mapping_examples_markdown())
