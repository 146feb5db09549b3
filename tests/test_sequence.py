"""The sequence model: each user's daily activity before T as its input (never a day from T on),
and a GRU bundle scored by the Spark job on both paths like the plain function, with reasons."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pytest
from pyspark.sql import SparkSession

from churn_spark.config import Config
from churn_spark.errors import InputError
from churn_spark.score import Scorer, check_compatible
from churn_spark.snapshots import read_daily
from churn_spark.train.bundle import Bundle
from churn_spark.train.sequence import SEQUENCE, attach
from tests.builders import (
    A, B, C, T1, check_scoring_paths, event, frame, gru_bundle, register, store_events, store_features,
)

T2 = T1 + dt.timedelta(days=1)


def _day(offset: int, hour: int = 10) -> str:
    return (dt.datetime.combine(T1, dt.time(hour)) + dt.timedelta(days=offset)).isoformat()


def test_the_sequence_holds_the_days_before_t_oldest_first_and_never_t_itself(
        spark: SparkSession, config: Config) -> None:
    store_events(spark, config, [event("u1", _day(-6), price=9.0), event("u1", _day(-5), price=1.0),
                                 event("u1", _day(-1), price=3.0), event("u1", _day(-1, 11), price=2.0),
                                 event("u1", _day(0), price=7.0), event("u2", _day(-30))])
    rows = spark.createDataFrame([("u1", T1), ("u2", T1), ("u1", T2), ("u3", T1)], "user_id string, snapshot_date date")
    got = {(r.user_id, r.snapshot_date): r[SEQUENCE]
           for r in attach(rows, read_daily(spark, config), 5, ["purchases", "spend"]).collect()}
    log = math.log1p
    # Five days before T1, oldest first, (purchases, spend) a day: T1-5 (one, 1.0), T1-1 (two, 5.0).
    assert got[("u1", T1)] == pytest.approx([log(1), log(1), 0, 0, 0, 0, 0, 0, log(2), log(5)], rel=1e-6)
    # A day later the window has moved by one: T1 itself (7.0) is now its last day.
    assert got[("u1", T2)] == pytest.approx([0, 0, 0, 0, 0, 0, log(2), log(5), log(1), log(7)], rel=1e-6)
    assert got[("u2", T1)] == got[("u3", T1)] == [0.0] * 10  # active a month before; never seen


@pytest.mark.slow
def test_the_scoring_job_serves_a_sequence_model_with_the_plain_functions_values(
        spark: SparkSession, registered: Config, tmp_path: Path) -> None:
    """A GRU bundle registered as version 2: the job attaches each user's days before T from the
    rollup and scores on both paths (reasons through the pandas UDF, probabilities only through
    mapInArrow) what the plain function gives for the same rows; its reasons are the tabular
    features'. The model refuses rows without the sequence, in one line."""
    bundle = gru_bundle()
    assert register(registered, bundle, tmp_path / "gru.pt") == "2"
    store_events(spark, registered, [event("a", _day(-2), price=40.0), event("b", _day(-4), price=5.0),
                                     event("b", _day(-1), price=5.0), event("c", _day(-20))])
    users = {"a": A, "b": B, "c": C}
    store_features(spark, registered, T1, users)
    rows = frame(list(users.values()))
    sequences = attach(spark.createDataFrame([(u, T1) for u in users], "user_id string, snapshot_date date"),
                       read_daily(spark, registered), 5, ["purchases", "spend"]).orderBy("user_id").collect()
    rows[SEQUENCE] = [r[SEQUENCE] for r in sequences]
    assert rows[SEQUENCE][0] != rows[SEQUENCE][1]  # the users' days differ
    expected = Scorer(bundle).predict(rows)
    np.testing.assert_allclose(expected["churn_probability"], bundle.predict_proba(rows), rtol=1e-12)
    np.testing.assert_allclose(Bundle.from_bytes(bundle.to_bytes()).predict_proba(rows),
                               bundle.predict_proba(rows), rtol=1e-12)
    check_scoring_paths(spark, registered, T1, "2", expected, rtol=1e-5)
    assert any(expected["reason_features"].map(len))
    features = spark.createDataFrame(rows.drop(columns=[SEQUENCE]))
    with pytest.raises(InputError, match=f"^model version 2 does not fit here: missing feature\\(s\\) {SEQUENCE}$"):
        bundle.version = "2"
        check_compatible(bundle, features.schema, "here")
