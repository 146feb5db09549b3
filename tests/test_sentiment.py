"""Review sentiment on labelled sentences in English and Chinese, in Python and in Spark."""

from __future__ import annotations

import pytest
from pyspark.sql import SparkSession

from churn_spark.sentiment import MAX_SCORED_CHARS, score_text, sentiment_column

POSITIVE = ["Great quality, fast delivery.", "Love it, will buy again!", "Excellent service, very happy.",
            "质量很好，物流很快。", "和描述一致，很满意。", "东西不错，下次还来"]
NEGATIVE = ["Terrible quality, broke after two days.", "Very disappointed, slow delivery and poor service.",
            "Awful, the worst purchase ever.", "质量太差，用了两天就坏了。", "非常失望，发货慢，客服态度差。",
            "包装破损，很生气"]


@pytest.mark.parametrize("text", POSITIVE)
def test_positive_sentences_score_above_zero(text: str) -> None:
    assert 0.3 < score_text(text) <= 1.0


@pytest.mark.parametrize("text", NEGATIVE)
def test_negative_sentences_score_below_zero(text: str) -> None:
    assert -1.0 <= score_text(text) < -0.3


def test_no_text_has_no_score() -> None:
    assert score_text(None) is None and score_text("  ") is None


def test_spark_scores_equal_python_scores(spark: SparkSession) -> None:
    texts = [*POSITIVE, *NEGATIVE, None]
    frame = spark.createDataFrame([(t,) for t in texts], "text string")
    scored = {r.text: r.score for r in frame.select("text", sentiment_column(frame.text).alias("score")).collect()}
    assert scored == {t: score_text(t) for t in texts}


def _long(head: str, tail: str) -> tuple[str, str]:
    """A text whose first MAX_SCORED_CHARS characters repeat ``head`` and whose rest, ten times
    longer, repeats ``tail``; and that first part alone."""
    first = (head * MAX_SCORED_CHARS)[:MAX_SCORED_CHARS]
    return first + tail * (10 * MAX_SCORED_CHARS // len(tail)), first


LONG = [_long("Love it, will buy again! ", "Terrible quality, the worst purchase ever. "),
        _long("质量很好，物流很快。", "质量太差，用了两天就坏了。")]


@pytest.mark.parametrize("text, first", LONG)
def test_a_long_text_is_scored_on_its_first_characters(text: str, first: str) -> None:
    assert score_text(text) == score_text(first) > 0.3
    assert score_text(text[MAX_SCORED_CHARS:]) < -0.3  # the rest, were it scored, says the opposite


def test_spark_scores_a_long_text_on_its_first_characters(spark: SparkSession) -> None:
    frame = spark.createDataFrame([(text,) for text, _ in LONG], "text string")
    bounded = [r.score for r in frame.select(sentiment_column(frame.text).alias("score")).collect()]
    assert bounded == [score_text(first) for _, first in LONG]
