"""README tables generated from the code that owns them (a test keeps the README in step)."""

from __future__ import annotations

from churn_spark.contract import EVENT_FIELDS, EVENT_REASONS, USER_FIELDS, USER_REASONS, ContractField


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
