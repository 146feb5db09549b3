"""Training groundwork: preprocessing fitted in Spark, models built on the meta device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyspark.sql import Row, SparkSession
from pyspark.testing import assertDataFrameEqual

from churn_spark import btyd
from churn_spark.train import preprocess
from churn_spark.train.model import build_model


def test_preprocessing_is_fitted_on_training_rows_and_applied_anywhere(spark: SparkSession) -> None:
    train = spark.createDataFrame([(1.0, 5.0, "gold"), (3.0, 5.0, "basic"), (5.0, 5.0, "gold")],
                                  "spend double, flat double, level string")
    prep = preprocess.fit(train, ["spend", "flat"], ["level"])
    assert prep.numeric == {"spend": (3.0, pytest.approx((8 / 3) ** 0.5)), "flat": (5.0, 0.0)}
    assert prep.categorical == {"level": ["basic", "gold"]}
    assert prep.cardinalities() == [3]
    assert preprocess.Preprocessing.from_dict(prep.to_dict()) == prep

    test = spark.createDataFrame([("u1", 3.0, 7.0, "gold"), ("u2", 3.0 + (8 / 3) ** 0.5, 5.0, "platinum")],
                                 "user_id string, spend double, flat double, level string")
    assertDataFrameEqual(preprocess.apply(test, prep, keep=("user_id",)),
                         [Row("u1", 0.0, 2.0, 2), Row("u2", 1.0, 0.0, preprocess.UNKNOWN)])


def test_bgnbd_is_fitted_on_training_rows_and_its_inputs_derived_alike_in_spark_and_pandas(
    spark: SparkSession,
) -> None:
    rng = np.random.default_rng(7)
    x = rng.poisson(3, 40)
    t_x = np.where(x > 0, rng.uniform(0, 150, 40).round(), 0.0)
    age = np.where(rng.random(40) < 0.9, t_x + rng.uniform(1, 30, 40).round(), 0.0)  # a few never bought
    x, t_x = np.where(age > 0, x, 0), np.where(age > 0, t_x, 0.0)
    rows = [(f"u{i:02d}", float(i), int(x[i]), float(t_x[i]), float(age[i]), "gold" if i % 2 else "basic")
            for i in range(40)]
    train = spark.createDataFrame(rows, "user_id string, spend double, repeat_purchase_days int, "
                                        "purchase_span_days double, first_purchase_age_days double, level string")
    prep = preprocess.fit(train, ["spend", *btyd.SUMMARIES], ["level"], horizon=90)
    model = btyd.fit(x, t_x, age)
    assert prep.bgnbd == {"model": model.to_dict(), "horizon": 90, "inputs": True}
    assert list(prep.numeric) == ["spend", *btyd.SUMMARIES, *preprocess.BGNBD_INPUTS]
    assert prep.columns() == ["spend", *btyd.SUMMARIES, "level"]
    assert preprocess.Preprocessing.from_dict(prep.to_dict()) == prep

    pandas = train.toPandas()
    derived = preprocess.derive(pandas, prep)
    np.testing.assert_allclose(derived["bgnbd_p_alive"], model.p_alive(x, t_x, age))
    np.testing.assert_allclose(derived["bgnbd_expected_purchases"], model.expected_purchases(90, x, t_x, age))
    np.testing.assert_allclose(derived["bgnbd_p_no_purchase"], model.p_no_purchase(90, x, t_x, age))
    assert prep.numeric["bgnbd_p_alive"] == pytest.approx((derived["bgnbd_p_alive"].mean(),
                                                           derived["bgnbd_p_alive"].std(ddof=0)))
    in_spark = preprocess.apply(train, prep, keep=("user_id",)).orderBy("user_id").toPandas()
    np.testing.assert_allclose(in_spark[list(prep.numeric)].to_numpy(), preprocess.to_arrays(pandas, prep)[0],
                               rtol=1e-6, atol=1e-6)

    off = preprocess.fit(train, ["spend", *btyd.SUMMARIES], ["level"], horizon=90, bgnbd_inputs=False)
    assert off.derived() == () and list(off.numeric) == ["spend", *btyd.SUMMARIES]
    assert off.bgnbd == {**prep.bgnbd, "inputs": False}  # still fitted: the report's reference


def test_spark_arrays_standardised_have_the_values_of_the_pandas_preprocessing(spark: SparkSession) -> None:
    """Scoring's ``input_arrays`` (Spark) then ``standardise`` (numpy), and ``to_arrays`` (pandas):
    the same values, missing, NaN and infinite inputs and unseen categories included."""
    prep = preprocess.Preprocessing({"spend": (3.0, 2.0), "flat": (5.0, 0.0)}, {"level": ["basic", "gold"]})
    rows = [("u1", 7.0, 5.0, "gold"), ("u2", float("nan"), None, "platinum"),
            ("u3", float("-inf"), float("inf"), None)]
    frame = spark.createDataFrame(rows, "user_id string, spend double, flat double, level string")
    numeric, categories = preprocess.to_arrays(frame.toPandas(), prep)
    assert numeric.tolist() == [[2.0, 0.0], [0.0, 0.0], [-preprocess.Z_LIMIT, preprocess.Z_LIMIT]]
    assert categories.tolist() == [[2], [preprocess.UNKNOWN], [preprocess.UNKNOWN]]
    arrays = frame.select("user_id", *preprocess.input_arrays(prep)).orderBy("user_id").collect()
    raw = np.array([[np.nan if v is None else v for v in r[preprocess.NUMERIC]] for r in arrays])
    assert preprocess.standardise(raw, prep).tolist() == numeric.tolist()
    assert [r[preprocess.CATEGORIES] for r in arrays] == categories.tolist()


@pytest.mark.parametrize("kind", ["lr", "mlp"])
def test_models_materialise_from_the_meta_device_reproducibly(kind: str) -> None:
    first = build_model(kind, 3, [3, 5], torch.device("cpu"), seed=7)
    again = build_model(kind, 3, [3, 5], torch.device("cpu"), seed=7)
    other = build_model(kind, 3, [3, 5], torch.device("cpu"), seed=8)
    for name, tensor in first.state_dict().items():
        assert tensor.device.type == "cpu" and torch.isfinite(tensor).all()
        assert torch.equal(tensor, again.state_dict()[name])
    assert any(not torch.equal(t, other.state_dict()[n]) for n, t in first.state_dict().items())
    logits = first(torch.randn(4, 3), torch.tensor([[0, 1], [2, 4], [1, 0], [0, 3]]))
    assert logits.shape == (4,)


def test_unknown_model_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind 'gbm'; choose one of lr, mlp"):
        build_model("gbm", 3, [], torch.device("cpu"))
