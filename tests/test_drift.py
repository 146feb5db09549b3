"""Drift: PSI and Jensen-Shannon distance on hand distributions, the bins a reference freezes on
hand rows, and the scoring job writing ``drift_metrics`` from a registered model's reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scipy.spatial.distance import jensenshannon

from churn_spark import drift, tables
from churn_spark.config import Config
from churn_spark.score import Scorer, run_scoring
from tests.builders import A, B, C, LAPSED, T1, T2, frame, lr_bundle, register, store_features


def test_psi_and_js_distance_of_hand_distributions() -> None:
    expected, actual = [0.5, 0.5], [0.25, 0.75]
    # (0.25 - 0.5) ln(0.5) + (0.75 - 0.5) ln(1.5)
    assert drift.psi(expected, actual) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5), rel=1e-12)
    assert drift.js_distance(expected, actual) == pytest.approx(jensenshannon(expected, actual, base=2), rel=1e-12)
    assert drift.js_distance(expected, actual) == pytest.approx(0.2208958, abs=1e-7)
    assert (drift.psi(expected, expected), drift.js_distance(expected, expected)) == (0.0, 0.0)
    # Disjoint: JS distance 1; an empty bin counts as 1e-4, so PSI stays finite.
    assert drift.js_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
    assert drift.psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - 1e-4) * math.log(1e4))


def test_a_reference_freezes_decile_edges_and_shares_with_a_missing_bin(spark: SparkSession) -> None:
    rows = spark.createDataFrame([(float(x), "a" if x <= 10 else "b", x / 40) for x in range(1, 21)]
                                 + [(None, None, 0.9), (float("nan"), "a", 0.9)], "x double, c string, p double")
    frozen = drift.reference(rows, ["x"], ["c"])
    assert frozen["rows"] == 22
    assert frozen["numeric"]["x"]["edges"] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0]
    # missing (null and NaN), below 2 (x = 1), [2, 4) ... [16, 18): two each, 18 and above: three
    assert np.array(frozen["numeric"]["x"]["shares"]) * 22 == pytest.approx([2, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3])
    assert frozen["categorical"]["c"]["values"] == ["a", "b"]
    assert np.array(frozen["categorical"]["c"]["shares"]) * 22 == pytest.approx([1, 11, 10, 0])  # missing, a, b, unseen

    scored = rows.select("x", "c", F.col("p").alias(drift.SCORE))
    frozen = drift.with_score(frozen, scored)
    assert [m["psi"] for m in drift.measure(scored, frozen)] == [0.0, 0.0, 0.0]  # the reference itself

    # Everyone moves to the top bin, an unseen category, a certain score: the whole mass moves.
    moved = spark.createDataFrame([(100.0, "z", 1.0)] * 5, f"x double, c string, {drift.SCORE} double")
    measured = {m["feature"]: m for m in drift.measure(moved, frozen)}
    assert list(measured) == ["x", "c", drift.SCORE] and {m["rows"] for m in measured.values()} == {5}
    top = [0.0] * 10 + [1.0]
    assert measured["x"]["psi"] == pytest.approx(drift.psi(frozen["numeric"]["x"]["shares"], top))
    assert measured["x"]["js_distance"] == pytest.approx(jensenshannon(frozen["numeric"]["x"]["shares"], top, base=2))
    assert measured["c"]["js_distance"] == pytest.approx(1.0)  # no reference row was unseen
    certain = [0.0] * (len(frozen["score"]["shares"]) - 1) + [1.0]
    assert measured[drift.SCORE]["psi"] == pytest.approx(drift.psi(frozen["score"]["shares"], certain))


def test_scoring_writes_each_features_and_the_scores_drift_from_the_models_reference(
        spark: SparkSession, registered: Config, tmp_path: Path) -> None:
    """The reference is the population at T1 itself (the lapsed user is outside the model's
    population, in neither): no drift there; at T2 the users' features are swapped around."""
    users = {"a": A, "b": B, "c": C, "l": LAPSED}
    store_features(spark, registered, T1, users)
    features = tables.read_table(spark, registered, "user_features").where("user_id != 'l'")
    bundle = lr_bundle()
    probabilities = Scorer(bundle).predict(frame([A, B, C]))["churn_probability"]
    scores = spark.createDataFrame(pd.DataFrame({drift.SCORE: probabilities}))
    frozen = drift.reference(features, [*bundle.preprocessing.numeric], ["membership_level"])
    bundle.reference = drift.with_score(frozen, scores)
    version = register(registered, bundle, tmp_path / "with-reference.pt")

    result = run_scoring(spark, registered, T1, version)
    stored = tables.read_table(spark, registered, "drift_metrics").toPandas()
    assert [m["feature"] for m in result.drift] == [*bundle.preprocessing.numeric, "membership_level", drift.SCORE]
    assert sorted(stored["feature"]) == sorted(m["feature"] for m in result.drift)
    assert (stored["psi"].tolist(), stored["js_distance"].tolist()) == ([0.0] * 5, [0.0] * 5)
    assert set(stored["rows"]) == {3} and set(stored["model_version"]) == {version}
    assert result.drift_line() == ("drift_metrics: 4 features; score PSI 0.000, JS distance 0.000; features with "
                                   "PSI > 0.25: none")

    store_features(spark, registered, T2, {"a": B, "b": B, "c": B})
    run_scoring(spark, registered, T2, version)
    run_scoring(spark, registered, T2, version)  # a re-run replaces its date's rows
    at_t2 = tables.read_table(spark, registered, "drift_metrics").where(F.col("snapshot_date") == T2).toPandas()
    assert len(at_t2) == 5 and (at_t2["psi"] > 0).all()
    assert len(tables.read_table(spark, registered, "drift_metrics").toPandas()) == 10


def test_a_model_without_a_reference_scores_and_measures_nothing(spark: SparkSession, registered: Config) -> None:
    store_features(spark, registered, T1, {"a": A})
    result = run_scoring(spark, registered, T1)
    assert result.drift == [] and not tables.table_exists(spark, registered, "drift_metrics")
    assert result.drift_line().startswith("drift_metrics: none (the model holds no drift reference")
