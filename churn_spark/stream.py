"""``churn-spark stream``: the Structured Streaming queries behind real-time warnings.

The warnings query reads the Delta ``events`` table as a streaming source and hands each
micro-batch of new events to ``live.Warner`` through ``foreachBatch``. On its first start (no
checkpoint yet) the ``user_daily`` rollup is brought up to the current events version V and the
query starts from version V itself (Delta refuses a starting version past the latest one, and
"latest" would miss a commit landing between the rollup and the start): every event is then in
``user_daily`` through the rollup, the stream or both, never neither. The first micro-batch
(commit V and whatever followed it) brings the rollup up to date instead of merging day by day,
and its users are re-scored once. Later starts resume from the checkpoint.

With ``landing`` a second query watches a landing folder for new event files and ingests them
through the batch ``ingest`` (the same contract checks, quarantine with reasons, de-duplication
by event id and ``ingest_log``), so streamed and batch-ingested events are the same rows; the
warnings query picks them up from the events table.

Each query's checkpoint lives under the lakehouse (``checkpoints/``). Both are exactly-once for
what they write: a re-run micro-batch ingests no file twice (``ingest_log``, the event-id
merge), recomputes the same ``user_daily`` rows, and merges warnings insert-only by their key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from churn_spark import storage, tables
from churn_spark.config import Config, parse_trigger
from churn_spark.errors import ChurnSparkError, InputError
from churn_spark.live import Progress, Warner
from churn_spark.rollup import run_rollup

log = logging.getLogger(__name__)

def checkpoint(config: Config, query: str) -> str:
    """The checkpoint location of ``query`` (``warnings`` or ``landing``) under the lakehouse."""
    return storage.join(config.location("checkpoints"), query)


@dataclass(frozen=True)
class StreamRun:
    """What ``run_stream`` did."""

    progress: Progress
    files_ingested: int

    def lines(self) -> list[str]:
        landing = [f"landing: {self.files_ingested} file(s) ingested"] if self.files_ingested else []
        return [*landing, self.progress.summary()]


def run_stream(spark: SparkSession, config: Config, trigger: str | None = None, landing: str | None = None,
               fmt: str | None = None, source: str = "contract", timeout: float | None = None) -> StreamRun:
    """Run the warnings query (and, with ``landing``, the landing query) until they are done
    (``available-now``), ``timeout`` seconds have passed, or one fails.

    Raises
    ------
    InputError, ConfigError
        Before any query starts: no events table, no registered model, no tier cut-offs; or
        the first one-line error a micro-batch met.
    """
    from churn_spark.train.tracking import load_registered

    how = parse_trigger(trigger or config.stream.trigger)
    version, bundle = load_registered(config)
    warner = Warner(spark, config, version, bundle)
    ingester = _Ingester(spark, config, landing, fmt, source) if landing is not None else None
    if not tables.table_exists(spark, config, "events") and ingester is None:
        raise InputError(f"{config.table('events')}: no events table; run churn-spark ingest first")
    queries: list[StreamingQuery] = []
    try:
        if ingester is not None:
            queries.append(ingester.start(how))
            if "availableNow" in how:  # the warnings query reads what the landing query ingested
                _await(queries[-1], timeout)
        queries.append(start_warnings(spark, config, warner, how))
        if "availableNow" in how:
            _await(queries[-1], timeout)
        else:
            spark.streams.awaitAnyTermination(timeout) if timeout is not None else spark.streams.awaitAnyTermination()
    except PySparkException as err:
        raise _first_error(err, warner, ingester) from None
    finally:
        for query in queries:
            query.stop()
    return StreamRun(warner.progress, ingester.files if ingester is not None else 0)


def start_warnings(spark: SparkSession, config: Config, warner: Warner, how: dict[str, object]) -> StreamingQuery:
    """Start the warnings query: new rows of ``events`` into ``warner.process``."""
    location = checkpoint(config, "warnings")
    options = {"skipChangeCommits": "true", "maxFilesPerTrigger": str(config.stream.max_files_per_trigger)}
    warner.fresh = not storage.exists(storage.join(location, "offsets"), config)
    if warner.fresh:
        options["startingVersion"] = str(run_rollup(spark, config).events_version)
    events = tables.read_stream(spark, config, "events", options)
    warner.clock()  # the clock can be read (events clock: the table has events)
    return (events.writeStream.queryName("churn-spark warnings").foreachBatch(warner.process)
            .option("checkpointLocation", location).trigger(**how).start())


_BINARY_FILE = "path string, modificationTime timestamp, length bigint, content binary"  # the source's schema


class _Ingester:
    """The landing query: each micro-batch's new files through the batch ``ingest``."""

    def __init__(self, spark: SparkSession, config: Config, landing: str, fmt: str | None, source: str) -> None:
        from churn_spark.ingest import input_formats
        from churn_spark.sources import load_source

        self.spark, self.config, self.landing = spark, config, landing
        self.mapping = load_source(source)
        self.fmt = input_formats(self.mapping, landing, None, fmt, None, config)[0]
        self.files = 0
        self.error: ChurnSparkError | None = None

    def start(self, how: dict[str, object]) -> StreamingQuery:
        files = (self.spark.readStream.format("binaryFile").schema(_BINARY_FILE)
                 .option("maxFilesPerTrigger", str(self.config.stream.max_files_per_trigger))
                 .load(self.landing).select("path"))
        return (files.writeStream.queryName("churn-spark landing").foreachBatch(self.process)
                .option("checkpointLocation", checkpoint(self.config, "landing")).trigger(**how).start())

    def process(self, batch: DataFrame, batch_id: int) -> None:
        from churn_spark.ingest import ingest

        paths = sorted(r["path"] for r in batch.collect())
        if not paths:
            return
        try:
            for report in ingest(self.spark, self.config, paths, fmt=self.fmt, source=self.mapping):
                log.info("landing batch %d: %s", batch_id, report.summary())
        except ChurnSparkError as err:
            self.error = err
            raise
        self.files += len(paths)


def _await(query: StreamingQuery, timeout: float | None) -> None:
    if timeout is None:
        query.awaitTermination()
    else:
        query.awaitTermination(timeout)


def _first_error(err: PySparkException, warner: Warner, ingester: _Ingester | None) -> Exception:
    """The one-line error a micro-batch raised, where it was one of ours; else Spark's."""
    for holder in (ingester, warner):
        if holder is not None and holder.error is not None:
            return holder.error
    return err
