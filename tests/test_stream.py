"""Real-time warnings on real streaming queries: the Delta events table (or a landing folder) as
the source, real checkpoints, ``available-now`` runs of ``churn-spark stream``.

The model is a logistic regression with hand-set weights over three features a bad day moves:
logit = -1 + 1.5 refunds_30d + 1.5 service_contacts_30d - (purchases_30d - 1). User ``u1``
bought twice in February and called the service desk on 9 March: at the start of 10 March the
batch job scores them logit -0.5 (p 0.378, medium). On 10 March they call again and ask for a
refund: logit 2.5 (p 0.924), high. ``u2`` only buys again on 10 March.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from churn_spark import tables
from churn_spark.config import Config
from churn_spark.errors import ConfigError, InputError
from churn_spark.live import features_now
from churn_spark.score import run_scoring
from churn_spark.snapshots import features_at
from churn_spark.stream import parse_trigger, run_stream
from churn_spark.train.preprocess import Preprocessing
from tests.builders import event, lr_bundle, profile, register, store_events

DAY = dt.date(2026, 3, 10)
PREP = Preprocessing(numeric={"refunds_30d": (0.0, 1.0), "service_contacts_30d": (0.0, 1.0),
                              "purchases_30d": (1.0, 1.0)},
                     categorical={"membership_level": ["gold", "silver"]})
HISTORY = [event("u1", "2026-02-12 10:00", "purchase", 40.0), event("u1", "2026-02-20 10:00", "purchase", 60.0),
           event("u1", "2026-03-09 09:00", "service"),
           event("u2", "2026-02-15 10:00", "purchase", 30.0), event("u2", "2026-02-25 10:00", "purchase", 30.0)]
BAD_DAY = [event("u1", "2026-03-10 08:15", "service"), event("u1", "2026-03-10 08:40", "refund"),
           event("u2", "2026-03-10 12:00", "purchase", 25.0)]


def _logistic(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit))


@pytest.fixture
def streaming(config: Config, tmp_path: Path) -> Config:
    """The hand-set model registered; tiers by probability (high >= 0.8, medium >= 0.3); the
    stream's clock the newest event; u1 and u2's history stored and scored at the start of DAY."""
    config = config.model_copy(update={
        "mlflow": config.mlflow.model_copy(update={"tracking_uri": str(tmp_path / "mlruns")}),
        "score": config.score.model_copy(update={"tiers_by": "probability", "high": 0.8, "medium": 0.3}),
        "stream": config.stream.model_copy(update={"clock": "events"}),
    })
    register(config, lr_bundle(PREP, weights=(1.5, 1.5, -1.0), category=(0.0, 0.0, 0.0), bias=-1.0),
             tmp_path / "lr.pt")
    return config


def _warnings(spark: SparkSession, config: Config) -> list[tuple]:
    rows = tables.read_table(spark, config, "warnings").orderBy("user_id", "kind").collect()
    return [(r["user_id"], r["day"], r["kind"], r["features_at"], round(r["probability_before"], 6),
             round(r["probability_after"], 6), r["risk_tier"], r["reason_features"], r["suggested_action"],
             r["model_version"]) for r in rows]


def test_a_bad_day_warns_once_with_its_reasons_and_the_batch_score(spark: SparkSession, streaming: Config) -> None:
    store_events(spark, streaming, HISTORY, [profile("u1"), profile("u2")])
    run_scoring(spark, streaming, DAY)  # the day's baseline, from the events before DAY
    run_stream(spark, streaming, "available-now")  # first start: rollup, nothing new yet
    store_events(spark, streaming, BAD_DAY)
    run = run_stream(spark, streaming, "available-now")

    before, after = _logistic(-1 + 1.5 - 1), _logistic(-1 + 1.5 + 3.0 - 1)
    expected = [(DAY, kind, DAY + dt.timedelta(days=1), round(before, 6), round(after, 6), "high",
                 ["service_contacts_30d", "refunds_30d"], "service follow-up call", "1")
                for kind in ("high_tier", "probability_rise")]
    assert _warnings(spark, streaming) == [("u1", *row) for row in expected]
    assert (run.progress.batches, run.progress.warnings) == (1, 2)
    reasons = tables.read_table(spark, streaming, "warnings").first()["top_reasons"]
    assert len(reasons) == 2 and all(isinstance(r, str) and r for r in reasons)

    # The batch job at the same instant (T = DAY + 1, the same events) gives the same score.
    run_scoring(spark, streaming, DAY + dt.timedelta(days=1))
    batch = (tables.read_table(spark, streaming, "churn_scores")
             .where(F.col("snapshot_date") == DAY + dt.timedelta(days=1)).where("user_id = 'u1'").first())
    warned = tables.read_table(spark, streaming, "warnings").first()
    assert warned["probability_after"] == pytest.approx(batch["churn_probability"], abs=1e-12)
    assert warned["top_reasons"] == batch["top_reasons"]

    # A second run finds nothing new and writes nothing.
    again = run_stream(spark, streaming, "available-now")
    assert again.progress.batches == 0
    assert len(_warnings(spark, streaming)) == 2


def test_streamed_features_equal_the_batch_features_after_late_and_out_of_order_events(
        spark: SparkSession, streaming: Config) -> None:
    """Events of earlier days arrive after later ones (a purchase that resolves a service
    contact of the week before, a view from three days back): the rows the stream merged into
    user_daily fold to exactly the batch job's features at the same instant."""
    store_events(spark, streaming, HISTORY, [profile("u1"), profile("u2")])
    run_scoring(spark, streaming, DAY)
    run_stream(spark, streaming, "available-now")
    store_events(spark, streaming, BAD_DAY)
    store_events(spark, streaming, [event("u1", "2026-03-07 10:00", "view"),
                                    event("u2", "2026-03-04 10:00", "service")])
    store_events(spark, streaming, [event("u2", "2026-03-09 10:00", "purchase", 10.0)])  # resolves the contact
    run_stream(spark, streaming, "available-now")

    as_of = DAY + dt.timedelta(days=1)
    users = spark.createDataFrame([("u1",), ("u2",)], "user_id string")
    streamed = features_now(spark, streaming, users, as_of)
    daily_before_rollup = tables.read_table(spark, streaming, "user_daily")
    assertDataFrameEqual(daily_before_rollup.where("user_id = 'u2' AND day = DATE'2026-03-04'")
                         .select("service_unresolved"), [(0,)], checkRowOrder=False)
    batch = features_at(spark, streaming, [as_of], from_events=True)
    assertDataFrameEqual(streamed, batch, checkRowOrder=False)


def test_tiers_by_quantile_need_a_scoring_run_and_refuse_before_writing(
        spark: SparkSession, streaming: Config) -> None:
    quantile = streaming.model_copy(update={"score": streaming.score.model_copy(
        update={"tiers_by": "quantile", "high": 0.9, "medium": 0.7})})
    store_events(spark, quantile, HISTORY, [profile("u1"), profile("u2")])
    with pytest.raises(InputError, match="no scoring run at or before 2026-03-09 to take the tier cut-offs"):
        run_stream(spark, quantile, "available-now")
    assert not tables.table_exists(spark, quantile, "warnings")


@pytest.mark.parametrize("text, expected", [
    ("available-now", {"availableNow": True}), ("10s", {"processingTime": "10 seconds"}),
    ("1 minute", {"processingTime": "60 seconds"})])
def test_triggers_are_read_for_both_ways_of_running(text: str, expected: dict) -> None:
    assert parse_trigger(text) == expected


def test_an_unknown_trigger_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="trigger 'soon': expected available-now or an interval"):
        parse_trigger("soon")
