"""Review sentiment in [-1, 1], English and Chinese, from models that ship inside PyPI packages.

English: VADER's lexicon (package ``vaderSentiment``), its compound score. Chinese: SnowNLP's
naive-Bayes model trained on product reviews (package ``snownlp``), rescaled from P(positive)
to [-1, 1]. A text with any CJK character is Chinese. Nothing is downloaded at run time.
In Spark, ``sentiment_column`` scores texts in a pandas UDF on the executors; the models load
once per Python worker, never per batch, and texts never travel to the driver.

Only the first ``MAX_SCORED_CHARS`` characters of a text are scored (cut in the JVM before
the text is sent to Python), so that one long text cannot stall the job: VADER's and
SnowNLP's time grows with the text (a 10 MB review kept a core busy for over six minutes).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import pandas as pd
from pyspark.sql import Column
from pyspark.sql import functions as F

_CJK = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
MAX_SCORED_CHARS = 2_000  # a review's first 2,000 characters: well under 1 s of SnowNLP


@functools.lru_cache(maxsize=1)
def _english() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@functools.lru_cache(maxsize=1)
def _chinese() -> Any:
    from snownlp import SnowNLP

    return SnowNLP


def score_text(text: str | None) -> float | None:
    """Sentiment of a text's first ``MAX_SCORED_CHARS`` characters: -1 (negative) to 1
    (positive); None for no text."""
    if text is None or not text.strip():
        return None
    text = text[:MAX_SCORED_CHARS]
    if _CJK.search(text):
        return 2.0 * float(_chinese()(text).sentiments) - 1.0
    return float(_english().polarity_scores(text)["compound"])


def score_texts(texts: pd.Series) -> pd.Series:
    """``score_text`` over a pandas Series (the body of the Spark UDF)."""
    return texts.map(score_text, na_action="ignore").astype("float64")


def sentiment_column(text: Column) -> Column:
    """A Spark column: the sentiment of ``text``, computed on the executors."""
    udf = F.pandas_udf(score_texts, "double")
    return udf(F.substring(text, 1, MAX_SCORED_CHARS))
