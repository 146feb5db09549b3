"""The record of scoring runs (``score_runs``): which dates are complete, which are not, and why.

A run at T is three writes: the ``churn_scores`` partition (``score``), the ``alerts`` partition
and the exports (``alerts``). ``score_runs`` holds one row per date, with status ``incomplete``
while alerts are being written and ``complete`` only after all three are. The row also records
the scores it summarises (``scored_at``) and the run its alerts compared with
(``previous_snapshot``, ``previous_scored_at``: the latest scored date before T, by snapshot date).
So a date is incomplete, whatever was killed where, when

* its scores have no row, or a row about other scores (killed after the ``churn_scores`` commit,
  or scored with ``--no-alerts``),
* its row says ``incomplete`` (killed while writing alerts or exports),
* or its alerts compared with another run than the one now before it (an earlier date was
  scored, or re-scored, afterwards).

Later dates are flagged, not recomputed: their exports may already be with the operations team,
and an alert list that changes under them unannounced is worse than one marked stale; ``churn-spark
alerts --as-of <date>`` recomputes it when the team is ready.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.config import Config

_ADDED = ("status", "scored_at", "previous_snapshot", "previous_scored_at")  # columns newer than the table's first rows
COMPLETE, INCOMPLETE = "complete", "incomplete"


def record(spark: SparkSession, config: Config, values: dict) -> None:
    """Replace the ``score_runs`` row of ``values["snapshot_date"]`` (one transaction)."""
    tables.add_columns(spark, config, "score_runs", _ADDED)
    schema = tables.SPECS["score_runs"].schema
    row = {**dict.fromkeys(schema.fieldNames()), **values,
           "recorded_at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)}
    frame = spark.createDataFrame([tuple(row[n] for n in schema.fieldNames())], schema)
    tables.replace_dates(frame, config, "score_runs", [values["snapshot_date"]])


def complete_runs(spark: SparkSession, config: Config) -> DataFrame:
    """The ``score_runs`` rows of complete runs (a row from before runs recorded a status is one)."""
    frame = tables.read_table(spark, config, "score_runs")
    if "status" not in frame.columns:
        return frame
    return frame.where(F.col("status").isNull() | (F.col("status") == COMPLETE))


@dataclass(frozen=True)
class Incomplete:
    """A date whose scores, alerts and exports do not belong together, and what to run."""

    snapshot_date: dt.date
    why: str

    def line(self) -> str:
        date = self.snapshot_date.isoformat()
        return f"incomplete run {date}: {self.why}; run churn-spark alerts --as-of {date}"


def incomplete_runs(spark: SparkSession, config: Config) -> list[Incomplete]:
    """Every scored date whose run is not complete, oldest first (see the module's docstring)."""
    if not tables.table_exists(spark, config, "churn_scores"):
        return []
    scored = {r["snapshot_date"]: r["scored_at"] for r in tables.read_table(spark, config, "churn_scores")
              .groupBy("snapshot_date").agg(F.max("scored_at").alias("scored_at")).collect()}
    runs = ({r["snapshot_date"]: r for r in tables.read_table(spark, config, "score_runs").collect()}
            if tables.table_exists(spark, config, "score_runs") else {})
    found = []
    for day in sorted(scored):
        why = _why(runs.get(day), scored[day], max((d for d in scored if d < day), default=None), scored)
        if why:
            found.append(Incomplete(day, why))
    return found


def _why(run: Row | None, scored_at: dt.datetime, previous: dt.date | None,
         scored: dict[dt.date, dt.datetime]) -> str | None:
    if run is None:
        return "scores written, alerts and exports not"
    values = run.asDict()
    if values.get("status") is None:  # a row from before runs recorded their status: complete
        return None
    if values["status"] != COMPLETE:
        return "alerts or exports not finished"
    if values["scored_at"] != scored_at:
        return "scored again since its alerts and exports were written"
    if values["previous_snapshot"] != previous:
        was = values["previous_snapshot"] or "no earlier run"
        return f"alerts compare with {was}, but the previous run is now {previous}"
    if previous is not None and values["previous_scored_at"] != scored[previous]:
        return f"alerts compare with an earlier scoring of {previous} (scored again since)"
    return None
