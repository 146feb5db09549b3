"""Promotion: the candidate takes the champion alias only when it ranks the latest matured
snapshot strictly better, and scoring loads the champion by default.

The models are real logistic regressions with weights set by hand, so every ROC-AUC below is
worked out on paper first.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import mlflow
import pytest
import torch
from pyspark.sql import SparkSession

from churn_spark.cli import main
from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.promote import promote
from churn_spark.train.bundle import Bundle
from churn_spark.train.tracking import champion_version, load_registered
from tests.builders import lr_bundle, register, store_dates

OLD, LATEST = dt.date(2026, 3, 1), dt.date(2026, 3, 15)
COLUMNS = ("user_id string, snapshot_date date, label int, days_since_last_purchase double, "
           "purchases_trend_30d double, spend_30d double, membership_level string")
# Features (days, trend, spend, level); z = (days-20)/10, (trend-0)/0.5, (spend-100)/50.
USERS = {
    "a": (50.0, -0.6, 50.0, "gold"),     # z ( 3.0, -1.2, -1.0)
    "b": (10.0, 0.2, 250.0, "silver"),   # z (-1.0,  0.4,  3.0)
    "c": (20.0, 0.0, 100.0, "gold"),     # z ( 0.0,  0.0,  0.0)
    "d": (30.0, 0.5, 150.0, "silver"),   # z ( 1.0,  1.0,  1.0)
}
LABELS = {"a": 1, "b": 0, "c": 1, "d": 0}
# lr_bundle (logit -1 + z_days - 2 z_trend - 0.5 z_spend +-0.4): a 5.3, b -4.7, c -0.6, d -2.9.
#   Both churners above both non-churners: ROC-AUC 1.0; the same weights negated: 0.0.
# days-only (logit z_days): a 3, b -1, c 0, d 1. Pairs (churner > non-churner): a>b, a>d, c>b,
#   not c>d: ROC-AUC 3/4.


def good() -> Bundle:
    return lr_bundle()


def days_only() -> Bundle:
    return lr_bundle(weights=(1.0, 0.0, 0.0), category=(0.0, 0.0, 0.0), bias=0.0)


def reversed_good() -> Bundle:
    return lr_bundle(weights=(-1.0, 2.0, 0.5), category=(0.0, -0.4, 0.4), bias=1.0)


@pytest.fixture
def tracked(config: Config, tmp_path: Path) -> Config:
    """The test's config with an MLflow registry of its own."""
    return config.model_copy(update={
        "mlflow": config.mlflow.model_copy(update={"tracking_uri": str(tmp_path / "mlruns")})})


def write_training_set(spark: SparkSession, config: Config, day: dt.date, labels: dict[str, int]) -> None:
    store_dates(spark, config, "training_set", [(user, day, labels[user], *USERS[user]) for user in USERS], COLUMNS,
                [day])


def version_tags(config: Config, version: str) -> dict[str, str]:
    tags = mlflow.MlflowClient().get_model_version(config.mlflow.model_name, version).tags
    return {k: v for k, v in tags.items() if k.startswith("promot")}


def test_champion_moves_only_to_a_strictly_better_candidate(
        spark: SparkSession, tracked: Config, tmp_path: Path) -> None:
    write_training_set(spark, tracked, LATEST, LABELS)
    # An older snapshot on which the reversed model would win: only the latest one counts.
    write_training_set(spark, tracked, OLD, {user: 1 - label for user, label in LABELS.items()})

    assert register(tracked, days_only(), tmp_path / "days.pt") == "1"
    assert load_registered(tracked, None)[0] == "1"  # no champion yet: the latest version
    first = promote(spark, tracked)
    assert (first.snapshot_date, first.users, first.candidate, first.champion, first.promoted) == \
        (LATEST, 4, "1", None, True)
    assert first.candidate_auc == pytest.approx(0.75) and first.champion_auc is None
    assert champion_version(tracked) == "1"

    assert register(tracked, reversed_good(), tmp_path / "reversed.pt") == "2"
    worse = promote(spark, tracked)
    assert (worse.candidate, worse.champion, worse.promoted) == ("2", "1", False)
    assert (worse.candidate_auc, worse.champion_auc) == (pytest.approx(0.0), pytest.approx(0.75))
    assert worse.lines()[-1] == "kept champion version 1: the candidate's ROC-AUC is not higher"
    assert champion_version(tracked) == "1"
    assert load_registered(tracked, None)[0] == "1"  # scoring keeps the champion, not version 2
    assert version_tags(tracked, "2") == {
        "promoted": "false", "promotion_auc": "0.000000", "promotion_champion": "1",
        "promotion_champion_auc": "0.750000", "promotion_snapshot": "2026-03-15"}

    assert register(tracked, days_only(), tmp_path / "days-again.pt") == "3"
    tie = promote(spark, tracked)  # as good is not better
    assert (tie.candidate_auc, tie.promoted) == (pytest.approx(0.75), False)
    assert champion_version(tracked) == "1"

    assert register(tracked, good(), tmp_path / "good.pt") == "4"
    better = promote(spark, tracked)
    assert (better.candidate, better.champion, better.promoted) == ("4", "1", True)
    assert (better.candidate_auc, better.champion_auc) == (pytest.approx(1.0), pytest.approx(0.75))
    assert better.lines() == [
        "evaluated on training_set snapshot 2026-03-15 (4 users)",
        "candidate version 4: ROC-AUC 1.0000",
        "champion  version 1: ROC-AUC 0.7500",
        "version 4 promoted to champion (was version 1)",
    ]
    version, bundle = load_registered(tracked, None)
    assert (version, bundle.version) == ("4", "4")
    torch.testing.assert_close(bundle.state["linear.weight"], good().state["linear.weight"])
    assert load_registered(tracked, "latest")[0] == "4"
    assert version_tags(tracked, "4")["promoted"] == "true"


def test_a_named_candidate_is_compared_and_the_command_prints_the_decision(
        spark: SparkSession, tracked: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_training_set(spark, tracked, LATEST, LABELS)
    register(tracked, good(), tmp_path / "good.pt")
    register(tracked, reversed_good(), tmp_path / "reversed.pt")
    assert promote(spark, tracked, "1").promoted  # version 1, not the latest (2)
    assert champion_version(tracked) == "1"

    code = main(["promote", "--candidate", "2", "--set", f"lakehouse={tracked.lakehouse}",
                 "--set", f"mlflow.tracking_uri={tracked.mlflow.tracking_uri}"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "evaluated on training_set snapshot 2026-03-15 (4 users)",
        "candidate version 2: ROC-AUC 0.0000",
        "champion  version 1: ROC-AUC 1.0000",
        "kept champion version 1: the candidate's ROC-AUC is not higher",
    ]
    assert champion_version(tracked) == "1"


def test_unusable_inputs_are_refused_before_any_tag_or_alias(spark: SparkSession, tracked: Config,
                                                             tmp_path: Path) -> None:
    with pytest.raises(InputError, match="^no registered model churn-spark at .*; run churn-spark train first$"):
        promote(spark, tracked)
    register(tracked, good(), tmp_path / "good.pt")
    with pytest.raises(InputError, match="model churn-spark: no version 9 at .*; registered: 1$"):
        promote(spark, tracked, "9")
    with pytest.raises(InputError, match="no training_set table; run churn-spark labels first$"):
        promote(spark, tracked)
    write_training_set(spark, tracked, LATEST, {user: 1 for user in USERS})
    with pytest.raises(InputError, match="training_set at 2026-03-15: every label is 1; "
                                         "ROC-AUC needs churners and non-churners$"):
        promote(spark, tracked)
    assert champion_version(tracked) is None
    assert version_tags(tracked, "1") == {}
