"""Scoring: the plain predict function, the Spark job, tiers, reasons and their safety checks.

The model is a real logistic regression whose weights are set by hand, so every probability,
contribution and reason below is computed on paper first.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pyspark.sql import SparkSession
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from churn_spark import tables
from churn_spark.calibrate import Calibration
from churn_spark.cli import main
from churn_spark.config import Config, FeaturesConfig
from churn_spark.errors import InputError
from churn_spark.explain import ReasonWriter, attributions
from churn_spark.features import catalogue
from churn_spark.report import top_reasons_in_words
from churn_spark.score import Scorer, check_compatible, run_scoring, score_probabilities, score_users
from churn_spark.train.bundle import ENSEMBLE, Bundle, BoosterModel
from churn_spark.train.preprocess import Preprocessing, raw_arrays, to_arrays
from tests.builders import (
    A, B, C, BGNBD_PREP, LAPSED, PREP, T1, T2, booster_bundle, check_scoring_paths, event, frame, lr_bundle, profile,
    register, scores_at, store_events, store_features, store_legacy,
)


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_predict_gives_the_models_probability_and_the_features_that_push_it_up() -> None:
    rows = frame([A, B, C])
    bundle = lr_bundle()
    out = Scorer(bundle).predict(rows)
    assert out["churn_probability"].tolist() == pytest.approx([sigmoid(5.3), sigmoid(-4.7), sigmoid(-0.6)], abs=1e-6)
    np.testing.assert_array_equal(out["churn_probability"].to_numpy(), bundle.predict_proba(rows))
    assert out["reason_features"].tolist() == [
        ["days_since_last_purchase", "purchases_trend_30d", "spend_30d"], [], ["membership_level"]]
    assert out["top_reasons"].tolist() == [
        ["last purchase 50 days ago (typical 20)", "purchases fell 75% vs the previous 30 days",
         "money spent in the last 30 days: 50 (typical 100)"],
        [],
        ["membership level: gold"],
    ]


def test_lr_contributions_are_coefficient_times_value_and_sum_to_the_logit() -> None:
    bundle = lr_bundle()
    numeric, categories = to_arrays(frame([A, B]), PREP)
    logits, contributions = attributions(bundle.network(), numeric, categories)
    np.testing.assert_allclose(contributions, [[3.0, 2.4, 0.5, 0.4], [-1.0, -0.8, -1.5, -0.4]], atol=1e-6)
    np.testing.assert_allclose(contributions.sum(axis=1) - 1.0, logits.numpy(), atol=1e-6)  # bias -1, mean category 0


def test_reasons_name_the_features_that_moved_the_score() -> None:
    """Setting a reason feature back to its typical value lowers the score; the strongest most."""
    bundle, rows = lr_bundle(), frame([A])
    reasons = Scorer(bundle).predict(rows)["reason_features"][0]
    base = bundle.predict_proba(rows)[0]
    drops = {}
    for name in PREP.numeric:
        typical = rows.copy()
        typical[name] = PREP.numeric[name][0]
        drops[name] = base - bundle.predict_proba(typical)[0]
    assert reasons == sorted(drops, key=drops.get, reverse=True)
    assert all(drops[name] > 0 for name in reasons)


def test_a_model_over_features_of_another_shape_is_refused() -> None:
    bundle = lr_bundle()
    bundle.state["linear.weight"] = torch.zeros(1, 5)
    schema = StructType([*[StructField(n, DoubleType()) for n in PREP.numeric],
                         StructField("membership_level", StringType())])
    with pytest.raises(InputError, match="weights do not fit its preprocessing state"):
        check_compatible(bundle, schema, "test rows")
    with pytest.raises(InputError, match="feature\\(s\\) of another type: membership_level$"):
        check_compatible(lr_bundle(), StructType([*schema.fields[:3], StructField("membership_level", DoubleType())]),
                         "test rows")


# --- reasons an operations team can act on -------------------------------------------------------

# logit = -1 + 1.0 z(days) + 0.5 z(gap std) - 1.0 z(tenure) - 0.8 z(first event) - 0.5 z(spend)
#         + {25-34: -0.3, unknown: 0.9} (mean of known: 0.3)
REASON_PREP = Preprocessing(
    numeric={"days_since_last_purchase": (20.0, 10.0), "purchase_gap_std_days": (5.0, 2.0),
             "tenure_days": (300.0, 100.0), "days_since_first_event": (300.0, 100.0), "spend_30d": (100.0, 50.0)},
    categorical={"age_band": ["25-34", "unknown"]},
)
REASON_COLUMNS = [*REASON_PREP.numeric, *REASON_PREP.categorical]


def reason_bundle() -> Bundle:
    return lr_bundle(REASON_PREP, (1.0, 0.5, -1.0, -0.8, -0.5), (0.0, -0.3, 0.9))


def test_unknown_and_none_values_and_repeats_are_never_reasons() -> None:
    """Contributions: X = days 3.0, gap std 1.0, tenure 2.0, first event 1.6, spend 0, age unknown 0.6;
    Y = days at its none value (180: no purchase in the history) 16, tenure 2.0, first event 1.6,
    spend at its none value (0) 1.0, age unknown 0.6."""
    rows = pd.DataFrame([(50.0, 9.0, 100.0, 100.0, 100.0, "unknown"), (180.0, 0.0, 100.0, 100.0, 0.0, "unknown")],
                        columns=REASON_COLUMNS)
    out = Scorer(reason_bundle(), reasons=5).predict(rows)
    assert out["reason_features"].tolist() == [
        ["days_since_last_purchase", "tenure_days", "purchase_gap_std_days"], ["tenure_days"]]
    assert out["top_reasons"].tolist() == [
        ["last purchase 50 days ago (typical 20)", "customer for 100 days (typical 300)",
         "standard deviation of the days between purchase days in the last 180 days: 9 (typical 5)"],
        ["customer for 100 days (typical 300)"]]


def test_a_user_with_values_out_of_range_never_stops_the_batch() -> None:
    """NaN reads as the training mean, -inf spend at -1000 standard deviations (+500 to the logit);
    neither is a reason. The other rows score as they do alone."""
    bad = (float("nan"), 1, 0.2, float("-inf"), 100.0, "gold")
    scorer = Scorer(lr_bundle())
    out = scorer.predict(frame([A, bad, B]))
    alone = scorer.predict(frame([A, B]))
    assert out["churn_probability"].tolist() == [alone["churn_probability"][0], 1.0, alone["churn_probability"][1]]
    assert out["top_reasons"].tolist() == [alone["top_reasons"][0], ["membership level: gold"], []]


def test_every_reason_text_stands_on_its_own_and_formats_any_value() -> None:
    features = catalogue(FeaturesConfig())
    prep = Preprocessing(numeric={f.name: (float("inf") if f.name == "spend_30d" else 2.0, 1.0)
                                  for f in features if f.dtype != "string"},
                         categorical={f.name: ["x"] for f in features if f.dtype == "string"})
    writer = ReasonWriter(features, prep, 180)
    for f in features:
        for value in (["x", None] if f.dtype == "string" else
                      [0, 1, -1, 0.5, 3.0, 1e308, -1e308, float("inf"), float("-inf"), float("nan"), None]):
            assert isinstance(writer.text(f.name, value), str), (f.name, value)
        text, label = writer.text(f.name, "x" if f.dtype == "string" else 3.0), writer.label(f.name)
        if f.reason:
            for vague in ("those", "their", " T", "1 if", "_"):
                assert vague not in text and vague not in label, (f.name, text, label)
    assert writer.text("spend_30d", 3.0) == "money spent in the last 30 days: 3 (typical unknown)"
    assert writer.text("spend_90d", float("inf")) == "money spent in the last 90 days: unknown (typical 2)"


def test_the_managers_report_counts_reasons_in_words(spark: SparkSession) -> None:
    alerts = spark.createDataFrame([(["days_since_last_purchase", "spend_30d"],), (["days_since_last_purchase"],),
                                    (["dwell_mean_30d"],)], "reason_features array<string>")
    got = top_reasons_in_words(alerts, FeaturesConfig())
    assert got[["reason", "alerts"]].values.tolist() == [
        ["time since the last purchase", 2], ["mean seconds per timed page view in the last 30 days", 1],
        ["money spent in the last 30 days", 1]]


# --- the Spark job (conftest's ``registered``: the hand-set model as version 1) -------------------


def test_job_scores_every_user_like_the_plain_function(spark: SparkSession, registered: Config) -> None:
    store_features(spark, registered, T1, {"a": A, "b": B, "c": C, "l": LAPSED})
    result = run_scoring(spark, registered, T1)
    got = scores_at(spark, registered, T1)
    expected = Scorer(lr_bundle()).predict(frame([A, B, C, LAPSED]))
    assert got["user_id"].tolist() == ["a", "b", "c", "l"]
    np.testing.assert_allclose(got["churn_probability"], expected["churn_probability"], rtol=1e-12)
    assert [list(r) for r in got["top_reasons"]] == expected["top_reasons"].tolist()
    assert got["risk_tier"].tolist() == ["high", "low", "medium", "lapsed"]
    assert set(got["model_version"]) == {"1"} and result.users == 4
    assert got["spend_90d"].tolist() == [100.0, 200.0, 40.0, 0.0]


def test_one_user_out_of_range_never_stops_the_scoring_run(spark: SparkSession, registered: Config) -> None:
    bad = (float("nan"), 1, 0.2, float("-inf"), 100.0, "gold")
    store_features(spark, registered, T1, {"a": A, "bad": bad, "c": C})
    assert run_scoring(spark, registered, T1).users == 3
    got = scores_at(spark, registered, T1)
    expected = Scorer(lr_bundle()).predict(frame([A, bad, C]))
    assert got["user_id"].tolist() == ["a", "bad", "c"]
    np.testing.assert_allclose(got["churn_probability"], expected["churn_probability"], rtol=1e-12)
    assert [list(r) for r in got["top_reasons"]] == expected["top_reasons"].tolist()
    assert (got["churn_probability"][1], list(got["top_reasons"][1])) == (1.0, ["membership level: gold"])


def test_probabilities_only_cross_as_two_arrays_and_equal_the_plain_function(
    spark: SparkSession, registered: Config
) -> None:
    """``score.reasons: 0``: the preprocessing runs in Spark and two array columns cross into
    ``mapInArrow``; the probabilities are the plain function's (NaN, -inf and a category never
    seen in training included), the tiers those of the reasons path, and no reasons."""
    bad = (float("nan"), 1, 0.2, float("-inf"), 100.0, "platinum")
    config = registered.model_copy(update={"score": registered.score.model_copy(update={"reasons": 0})})
    store_features(spark, config, T1, {"a": A, "bad": bad, "c": C, "l": LAPSED})
    run_scoring(spark, config, T1)
    got = scores_at(spark, config, T1)
    expected = Scorer(lr_bundle(), reasons=0).predict(frame([A, bad, C, LAPSED]))
    assert got["user_id"].tolist() == ["a", "bad", "c", "l"]
    np.testing.assert_allclose(got["churn_probability"], expected["churn_probability"], rtol=1e-12)
    assert got["risk_tier"].tolist() == ["high", "lapsed", "medium", "lapsed"]  # NaN recency: out of population
    assert [list(r) for r in got["top_reasons"]] == [[], [], [], []]
    assert got["spend_90d"].tolist() == [100.0, 100.0, 40.0, 0.0]


@pytest.mark.slow
def test_rerunning_a_date_replaces_only_that_partition(spark: SparkSession, registered: Config) -> None:
    store_features(spark, registered, T1, {"a": A, "b": B})
    store_features(spark, registered, T2, {"a": B, "b": A, "c": C})
    run_scoring(spark, registered, T1)
    run_scoring(spark, registered, T2)
    first = (scores_at(spark, registered, T1), scores_at(spark, registered, T2))
    run_scoring(spark, registered, T2)
    pd.testing.assert_frame_equal(scores_at(spark, registered, T1), first[0])
    pd.testing.assert_frame_equal(scores_at(spark, registered, T2), first[1])
    assert tables.read_table(spark, registered, "churn_scores").count() == 5


@pytest.mark.slow
def test_users_without_events_are_scored_from_computed_features(spark: SparkSession, registered: Config) -> None:
    """No user_features partition at T: the job computes features; a user with a profile and no
    events gets the none values, a score, and the lapsed tier."""
    store_events(spark, registered, [event("u4", dt.datetime(2026, 2, 27, 12), "purchase", 12.0)],
                 [profile("u2"), profile("u4")])
    run_scoring(spark, registered, T1)
    got = scores_at(spark, registered, T1)
    assert got["user_id"].tolist() == ["u2", "u4"]
    assert got["risk_tier"].tolist()[0] == "lapsed"
    assert got["churn_probability"].notna().all()


def test_missing_version_is_refused_and_nothing_written(spark: SparkSession, registered: Config) -> None:
    store_features(spark, registered, T1, {"a": A})
    with pytest.raises(InputError, match=r"model churn-spark: no version 7 .*registered: 1$"):
        run_scoring(spark, registered, T1, "7")
    assert not tables.table_exists(spark, registered, "churn_scores")


def test_features_the_model_lacks_are_refused_and_nothing_written(spark: SparkSession, registered: Config) -> None:
    rows = spark.createDataFrame([("a", T1, 50.0, 1, -0.6, 100.0, "gold")],
                                 "user_id string, snapshot_date date, days_since_last_purchase double, "
                                 "purchase_seen int, purchases_trend_30d double, spend_90d double, "
                                 "membership_level string")
    store_legacy(rows, registered, "user_features")  # features of another catalogue
    with pytest.raises(InputError, match=r"model version 1 does not fit .*: missing feature\(s\) spend_30d$"):
        run_scoring(spark, registered, T1)
    assert not tables.table_exists(spark, registered, "churn_scores")


def test_an_empty_population_is_an_error(spark: SparkSession, registered: Config) -> None:
    store_events(spark, registered, [event("u9", dt.datetime(2026, 3, 10, 12), "view")])  # after T1
    with pytest.raises(InputError, match=r"^score at 2026-03-01: no events in its feature window "
                                         r"\[2025-09-02, 2026-03-01\) \(the events span 2026-03-10 to 2026-03-10\); "
                                         r"nothing to score$"):
        run_scoring(spark, registered, T1)
    assert not tables.table_exists(spark, registered, "churn_scores")


@pytest.mark.slow
def test_a_date_whose_window_holds_no_events_is_refused_before_writing(
        spark: SparkSession, registered: Config, capsys: pytest.CaptureFixture[str]) -> None:
    """Today 2030-01-01 scores everyone "lapsed" with cut-offs 1.0 and exits 0. The window is
    [T - history_days, T): one event on its first day is enough to score."""
    store_events(spark, registered, [event("u1", dt.datetime(2026, 2, 27, 12), "purchase", 12.0),
                                     event("u2", dt.datetime(2026, 6, 1, 23, 59), "view")],
                 [profile("u1"), profile("u2"), profile("u3")])
    far = dt.date(2030, 1, 1)
    line = ("score at 2030-01-01: no events in its feature window [2029-07-05, 2030-01-01) "
            "(the events span 2026-02-27 to 2026-06-01); nothing to score")
    with pytest.raises(InputError) as refused:
        run_scoring(spark, registered, far)
    assert str(refused.value) == line
    code = main(["score", "--as-of", "2030-01-01", "--set", f"lakehouse={registered.lakehouse}",
                 "--set", f"mlflow.tracking_uri={registered.mlflow.tracking_uri}"])
    assert (code, capsys.readouterr().err.splitlines()) == (2, [f"churn-spark: error: {line}"])
    assert not tables.table_exists(spark, registered, "churn_scores")

    edge = dt.date(2026, 6, 1) + dt.timedelta(days=180)  # the window starts on the day of u2's view
    assert run_scoring(spark, registered, edge).users == 3


def test_an_empty_tracking_location_is_refused_in_one_line_and_left_uncreated(
        spark: SparkSession, config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nowhere = tmp_path / "no-mlruns"
    code = main(["score", "--as-of", "2026-03-01", "--set", f"lakehouse={config.lakehouse}",
                 "--set", f"mlflow.tracking_uri={nowhere}"])
    assert not nowhere.exists()  # no MLflow store made there
    assert (code, capsys.readouterr().err) == (
        2, f"churn-spark: error: no registered model churn-spark at {nowhere}; run churn-spark train first\n")
    empty = tmp_path / "empty-mlruns"
    empty.mkdir()
    at_empty = config.model_copy(update={"mlflow": config.mlflow.model_copy(update={"tracking_uri": str(empty)})})
    with pytest.raises(InputError, match=f"^no registered model churn-spark at {empty}; run churn-spark train first$"):
        run_scoring(spark, at_empty, T1)
    assert list(empty.iterdir()) == []
    assert not tables.table_exists(spark, config, "churn_scores")


# --- every model kind scores the same way: a LightGBM booster, calibration --------------------------

def test_a_booster_scores_with_its_exact_contributions_as_reasons() -> None:
    """LightGBM's per-feature contributions (``pred_contrib``) sum with its expected value to the
    logit; the scorer's probability is the booster's own; A (last purchase 50 days ago, churn
    by construction) has that as its first reason, B (10 days ago) not at all."""
    bundle = booster_bundle()
    rows = frame([A, B])
    model = bundle.model()
    logits, contributions = model.contributions(*raw_arrays(rows, PREP))
    raw = model.booster.predict(BoosterModel.inputs(*raw_arrays(rows, PREP)), raw_score=True)
    np.testing.assert_allclose(logits, raw, atol=1e-9)
    out = Scorer(bundle).predict(rows)
    np.testing.assert_allclose(out["churn_probability"], 1 / (1 + np.exp(-raw)), atol=1e-12)
    np.testing.assert_array_equal(out["churn_probability"].to_numpy(), bundle.predict_proba(rows))
    assert out["churn_probability"][0] > 0.9 > 0.1 > out["churn_probability"][1]
    assert out["reason_features"][0][0] == "days_since_last_purchase"
    assert out["top_reasons"][0][0] == "last purchase 50 days ago (typical 20)"
    assert "days_since_last_purchase" not in out["reason_features"][1]
    assert contributions[0, 0] > 0 > contributions[1, 0]


def test_a_booster_reads_missing_and_unseen_values_as_missing() -> None:
    """NaN numerics and a category never seen in training reach LightGBM as missing, never as a
    value, and are never reasons; the bundle survives its bytes."""
    bundle = Bundle.from_bytes(booster_bundle().to_bytes())
    rows = frame([(50.0, 1, float("nan"), 50.0, 100.0, "platinum"), (50.0, 1, float("nan"), 50.0, 100.0, None)])
    numeric, categories = raw_arrays(rows, PREP)
    assert np.isnan(BoosterModel.inputs(numeric, categories)[:, [1, 3]]).all()
    out = Scorer(bundle).predict(rows)
    assert out["churn_probability"][0] == out["churn_probability"][1]
    assert not {"purchases_trend_30d", "membership_level"} & {f for r in out["reason_features"] for f in r}


def test_a_booster_over_other_features_is_refused() -> None:
    bundle = booster_bundle()
    other = Bundle(bundle.kind, bundle.state, Preprocessing({"spend_30d": (100.0, 50.0)}, {}))
    with pytest.raises(InputError, match="the booster reads 4 features, the preprocessing state names 1"):
        check_compatible(other, StructType([StructField("spend_30d", DoubleType())]), "test rows")


def test_scores_are_calibrated_wherever_the_model_scores() -> None:
    """A Platt calibration (slope 0.5, intercept -1) maps A's logit 5.3 to sigmoid(1.65), in the
    scorer, the bundle and the probabilities-only path alike; the ranking is kept."""
    bundle = lr_bundle()
    bundle.calibration = Calibration("platt", slope=0.5, intercept=-1.0)
    rows = frame([A, B, C])
    expected = [sigmoid(0.5 * 5.3 - 1), sigmoid(0.5 * -4.7 - 1), sigmoid(0.5 * -0.6 - 1)]
    assert Scorer(bundle).predict(rows)["churn_probability"].tolist() == pytest.approx(expected, abs=1e-6)
    assert Scorer(bundle, reasons=0).predict(rows)["churn_probability"].tolist() == pytest.approx(expected, abs=1e-6)
    assert bundle.predict_proba(rows).tolist() == pytest.approx(expected, abs=1e-6)
    assert bundle.predict_proba(rows, calibrated=False).tolist() == pytest.approx(
        [sigmoid(5.3), sigmoid(-4.7), sigmoid(-0.6)], abs=1e-6)
    assert Bundle.from_bytes(bundle.to_bytes()).calibration == bundle.calibration


def test_an_ensemble_scores_the_mean_of_its_calibrated_members_with_their_mean_contributions() -> None:
    """An LR under Platt (slope 0.5, intercept -1) and the booster: the ensemble's probability is
    the mean of theirs, calibrated; its contributions the mean of theirs; the scorer (both
    paths) and the bundle agree, and the bundle survives its bytes."""
    lr, booster = lr_bundle(), booster_bundle()
    lr.calibration = Calibration("platt", slope=0.5, intercept=-1.0)
    rows = frame([A, B, C])
    ensemble = Bundle.from_bytes(Bundle.ensemble([lr, booster]).to_bytes())
    assert ensemble.kind == ENSEMBLE and ensemble.features == lr.features
    members = [np.array([sigmoid(0.5 * z - 1) for z in (5.3, -4.7, -0.6)]), booster.predict_proba(rows)]
    expected = (members[0] + members[1]) / 2
    np.testing.assert_allclose(ensemble.predict_proba(rows), expected, atol=1e-9)
    ensemble.calibration = Calibration("platt", slope=2.0, intercept=0.5)  # its own calibration comes on top
    calibrated = 1 / (1 + np.exp(-(2.0 * np.log(expected / (1 - expected)) + 0.5)))
    np.testing.assert_allclose(ensemble.predict_proba(rows), calibrated, atol=1e-9)
    _, contributions = ensemble.model().contributions(*raw_arrays(rows, PREP))
    parts = [bundle.model().contributions(*raw_arrays(rows, PREP))[1] for bundle in (lr, booster)]
    np.testing.assert_allclose(contributions, (parts[0] + parts[1]) / 2, atol=1e-9)
    for reasons in (3, 0):
        np.testing.assert_allclose(Scorer(ensemble, reasons=reasons).predict(rows)["churn_probability"],
                                   ensemble.predict_proba(rows), atol=1e-12)
    assert Scorer(ensemble).predict(rows)["reason_features"][0][0] == "days_since_last_purchase"


@pytest.mark.slow
def test_the_scoring_job_serves_a_registered_booster(spark: SparkSession, registered: Config, tmp_path: Path) -> None:
    """A calibrated booster registered as a newer version is scored by the Spark job on both
    paths (reasons through the pandas UDF, probabilities only through mapInArrow): the values of
    the plain function, reasons included."""
    bundle = booster_bundle()
    bundle.calibration = Calibration("isotonic", knots_x=(0.0, 0.5, 1.0), knots_y=(0.1, 0.2, 0.8))
    assert register(registered, bundle, tmp_path / "lightgbm.pt") == "2"
    users = {"a": A, "b": B, "c": C, "l": LAPSED}
    store_features(spark, registered, T1, users)
    check_scoring_paths(spark, registered, T1, "2", Scorer(bundle).predict(frame(list(users.values()))))


def test_bgnbd_inputs_are_derived_wherever_the_model_scores(spark: SparkSession) -> None:
    """A model whose preprocessing derives BG/NBD inputs reads each user's purchase summaries;
    Spark's two paths (reasons, arrays) derive them as the plain function does."""
    bundle = lr_bundle(BGNBD_PREP, weights=(1.0, -2.0, -0.5, -3.0, 0.0, 2.0))
    summaries = [(1, 1.0, 3.0), (0, 0.0, 3.0), (1, 1.0, 3.0)]  # x, t_x, age
    rows = frame([A, B, C]).assign(user_id=["a", "b", "c"], **{
        name: [s[i] for s in summaries] for i, name in enumerate(
            ("repeat_purchase_days", "purchase_span_days", "first_purchase_age_days"))})
    assert bundle.preprocessing.columns() == [*PREP.numeric, "repeat_purchase_days", "purchase_span_days",
                                              "first_purchase_age_days", "membership_level"]
    expected = Scorer(bundle).predict(rows)
    # a: P(alive) 1/3 and P(no purchase in 4 days) 2/3 + 1/3 * 1/4 = 3/4 (test_btyd's hand values)
    z = {"bgnbd_p_alive": (1 / 3 - 0.5) / 0.25, "bgnbd_p_no_purchase": (0.75 - 0.5) / 0.25}
    logit_a = -1 + 1.0 * 3 - 2.0 * (-1.2) - 0.5 * (-1) + 0.4 - 3.0 * z["bgnbd_p_alive"] + 2.0 * z["bgnbd_p_no_purchase"]
    assert expected["churn_probability"][0] == pytest.approx(sigmoid(logit_a))
    assert "bgnbd_p_alive" in expected["reason_features"][0]

    features = spark.createDataFrame(rows)
    with_reasons = score_users(features, bundle, FeaturesConfig(), 3).orderBy("user_id").toPandas()
    np.testing.assert_allclose(with_reasons["churn_probability"], expected["churn_probability"], rtol=1e-12)
    assert [list(r) for r in with_reasons["top_reasons"]] == expected["top_reasons"].tolist()
    arrays = score_probabilities(features, bundle, ["user_id"]).orderBy("user_id").toPandas()
    np.testing.assert_allclose(arrays["churn_probability"], expected["churn_probability"], rtol=1e-12)
