"""What a notebook needs to run on Databricks and as a plain local script alike."""

from __future__ import annotations

import os
from typing import Any

from pyspark.sql import SparkSession

from churn_spark.config import Config, load_config
from churn_spark.spark import get_spark


def widget(name: str, default: str) -> str:
    """A Databricks text widget's value; locally the environment variable CHURN_<NAME>, else default."""
    dbutils = _dbutils()
    if dbutils is not None:
        dbutils.widgets.text(name, default)
        return str(dbutils.widgets.get(name))
    return os.environ.get(f"CHURN_{name.upper()}", default)


def setup(conf: str, overrides: str = "") -> tuple[Config, SparkSession]:
    """The config (``overrides``: ``KEY=VALUE`` separated by ``;``) and the active or a new session."""
    config = load_config(conf, [item for item in overrides.split(";") if item.strip()])
    return config, get_spark(config.spark)


def show(frame: Any, rows: int = 20) -> None:
    """``display`` on Databricks, a printed table elsewhere (Spark or pandas DataFrames)."""
    display = _ipython_global("display") if _dbutils() is not None else None
    if display is not None:
        display(frame)
    elif hasattr(frame, "to_string"):  # pandas
        print(frame.head(rows).to_string(index=False))
    else:
        frame.show(rows, truncate=False)


def show_text(text: str) -> None:
    """Plain text (a summary, a path): printed, on Databricks too."""
    print(text)


def _dbutils() -> Any:
    return _ipython_global("dbutils")


def _ipython_global(name: str) -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return None if shell is None else shell.user_ns.get(name)
