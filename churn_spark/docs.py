"""README tables generated from the code that owns them (a test keeps the README in step)."""

from __future__ import annotations

from churn_spark.config import IngestConfig
from churn_spark.contract import (
    ACCEPTED_TYPES, EVENT_FIELDS, EVENT_REASONS, USER_FIELDS, USER_REASONS, ContractField,
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


if __name__ == "__main__":
    print(contract_markdown())
    print()
    print(features_markdown())
