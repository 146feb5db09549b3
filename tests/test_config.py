import datetime as dt
from pathlib import Path

import pytest

from churn_spark.config import load_config
from churn_spark.errors import ConfigError


def test_local_default_is_read_from_the_repository_root() -> None:
    config = load_config()
    assert config.lakehouse == "./lakehouse"
    assert config.spark.master == "local[*]"
    assert config.table("events") == f"file:{Path.cwd()}/lakehouse/events"
    assert config.ingest.max_future == dt.timedelta(days=1)


def test_overrides_are_dotted_and_typed() -> None:
    config = load_config(None, ["lakehouse=./lakehouse-test", "generate.users=50",
                                "spark.settings.spark.sql.shuffle.partitions=3"])
    assert config.table("users") == f"file:{Path.cwd()}/lakehouse-test/users"
    assert load_config(None, ["lakehouse=s3a://bucket/churn/"]).table("users") == "s3a://bucket/churn/users"
    assert config.generate.users == 50
    assert config.spark.settings["spark.sql.shuffle.partitions"] == "3"


def test_cluster_example_uses_metastore_names() -> None:
    config = load_config("conf/cluster.yaml")
    assert config.spark.master is None
    assert config.table("events") == "churn.events"


def test_unknown_key_is_named_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("spark:\n  mastr: local[2]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == f"{path}: spark.mastr: unknown key"


def test_bad_value_is_named() -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, ["generate.users=0"])
    assert str(err.value).startswith("conf/local.yaml: generate.users: Input should be greater than or equal to 1")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("item, message", [
    ("lakehouse", "--set 'lakehouse': expected KEY=VALUE"),
    ("lakehouse.x=1", "--set 'lakehouse.x=1': lakehouse is not a section"),
    ("train.train_snapshots=[[[", "--set 'train.train_snapshots=[[[': value is not valid YAML "
                                   "(expected the node content, but found '<stream end>')"),
])
def test_malformed_override(item: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(None, [item])
    assert str(err.value) == message


def test_unknown_table_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown table 'evnts'"):
        load_config().table("evnts")


def test_readme_contract_table_is_generated_from_the_contract() -> None:
    from churn_spark.docs import contract_markdown

    readme = Path("README.md").read_text()
    between = readme.split("<!-- contract:begin -->\n")[1].split("\n<!-- contract:end -->")[0]
    assert between == contract_markdown()


@pytest.mark.parametrize("marker, generated", [("mapping", "mapping_markdown"),
                                               ("mapping-examples", "mapping_examples_markdown")])
def test_readme_mapping_reference_and_examples_are_generated(marker: str, generated: str) -> None:
    from churn_spark import docs

    readme = Path("README.md").read_text()
    between = readme.split(f"<!-- {marker}:begin -->\n")[1].split(f"\n<!-- {marker}:end -->")[0]
    assert between == getattr(docs, generated)()


def test_readme_feature_table_is_generated_from_the_catalogue() -> None:
    from churn_spark.docs import features_markdown

    readme = Path("README.md").read_text()
    between = readme.split("<!-- features:begin -->\n")[1].split("\n<!-- features:end -->")[0]
    assert between == features_markdown()


@pytest.mark.parametrize("text, dates", [
    ("2026-03-15,2026-03-01", [dt.date(2026, 3, 1), dt.date(2026, 3, 15)]),
    ("2026-03-01:2026-03-29:14", [dt.date(2026, 3, 1), dt.date(2026, 3, 15), dt.date(2026, 3, 29)]),
    ("2026-03-01:2026-03-10:7", [dt.date(2026, 3, 1), dt.date(2026, 3, 8)]),
    ("2026-03-01:2026-03-10:7,2026-06-01", [dt.date(2026, 3, 1), dt.date(2026, 3, 8), dt.date(2026, 6, 1)]),
])
def test_snapshot_dates_on_the_command_line(text: str, dates: list) -> None:
    from churn_spark.cli import parse_dates

    assert parse_dates(text) == dates


def test_relative_dates_are_days_before_today_in_utc() -> None:
    from churn_spark.cli import parse_dates

    today = dt.datetime.now(dt.timezone.utc).date()
    assert parse_dates("today-31,today") == [today - dt.timedelta(days=31), today]


@pytest.mark.parametrize("text", ["2026-02-30", "2026-03-10:2026-03-01:7", "2026-03-01:2026-03-10:0", "soon"])
def test_bad_snapshot_dates_are_refused(text: str) -> None:
    import argparse

    from churn_spark.cli import parse_dates

    with pytest.raises(argparse.ArgumentTypeError, match="expected YYYY-MM-DD"):
        parse_dates(text)


@pytest.mark.parametrize("argv, line", [
    (["features", "--as-of", ""], "churn-spark features: argument --as-of: '': no date given; expected "
                                  "YYYY-MM-DD, START:END:STEP_DAYS or today-N items, comma-separated"),
    (["labels", "--as-of", ","], "churn-spark labels: argument --as-of: ',': no date given; expected "
                                 "YYYY-MM-DD, START:END:STEP_DAYS or today-N items, comma-separated"),
    (["score", "--as-of", ""], "churn-spark score: argument --as-of: '': expected a date YYYY-MM-DD"),
    (["score", "--as-of", ","], "churn-spark score: argument --as-of: ',': expected a date YYYY-MM-DD"),
    (["score", "--model"], "churn-spark score: argument --model-version: expected one argument"),
])
def test_bad_arguments_are_one_line_naming_the_argument(
        argv: list[str], line: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Today ``--as-of ''`` and ``--as-of ','`` give features no date at all (a traceback later),
    and argparse's refusals print a usage block and raise SystemExit."""
    from churn_spark.cli import main

    assert main(argv) == 2
    captured = capsys.readouterr()
    assert (captured.out, captured.err.splitlines()) == ("", [f"churn-spark: error: {line}"])


def test_history_must_cover_the_longest_window() -> None:
    with pytest.raises(ConfigError, match="features.history_days \\(100\\) must cover the longest window"):
        load_config(None, ["features.history_days=100", "features.windows=[7, 30, 120]"])
