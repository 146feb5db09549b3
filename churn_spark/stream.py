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

import contextlib
import logging
import time
from collections.abc import Iterator
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
    live = LiveStream(spark, config, landing, fmt, source)
    try:
        live.start(trigger or config.stream.trigger, timeout)
        live.wait(timeout)
    finally:
        live.stop()
    return live.result()


class LiveStream:
    """The queries of ``churn-spark stream``, started, waited on and stopped (a notebook holds
    one while it feeds events; ``run_stream`` runs one to its end).

    Parameters
    ----------
    spark, config
        The session; the lakehouse, model registry, tiers and stream settings.
    landing, fmt, source
        A landing folder to watch (None: the events table only), its files' format and mapping.
    """

    def __init__(self, spark: SparkSession, config: Config, landing: str | None = None, fmt: str | None = None,
                 source: str = "contract") -> None:
        from churn_spark.train.tracking import load_registered

        self.spark, self.config = spark, config
        self.warner = Warner(spark, config, *load_registered(config))
        self.ingester = _Ingester(spark, config, landing, fmt, source) if landing is not None else None
        if self.ingester is None and not tables.table_exists(spark, config, "events"):
            raise InputError(f"{config.table('events')}: no events table; run churn-spark ingest first")
        self.queries: list[StreamingQuery] = []

    def start(self, trigger: str, timeout: float | None = None) -> LiveStream:
        """Start the queries; with ``available-now`` the landing query ends before the warnings
        query starts (it reads what the landing query ingested)."""
        how = parse_trigger(trigger)
        with self._errors():
            if self.ingester is not None:
                self.queries.append(self.ingester.start(how))
                if "availableNow" in how:
                    self.queries[-1].awaitTermination(*(() if timeout is None else (timeout,)))
            self.queries.append(start_warnings(self.spark, self.config, self.warner, how))
        return self

    def wait(self, timeout: float | None = None) -> None:
        """Until every query has ended (``available-now``), ``timeout`` seconds have passed, or
        one has failed (raised here)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._errors():
            while any(q.isActive for q in self.queries) and (deadline is None or time.monotonic() < deadline):
                for query in self.queries:
                    if not query.isActive and query.exception() is not None:
                        query.awaitTermination()  # raises the query's error
                time.sleep(0.5)
            for query in self.queries:
                if query.exception() is not None:
                    query.awaitTermination()

    def process_all_available(self) -> None:
        """Block until every file landed and every event stored so far has been processed."""
        with self._errors():
            for query in self.queries:
                query.processAllAvailable()

    def stop(self) -> None:
        for query in self.queries:
            query.stop()

    def result(self) -> StreamRun:
        return StreamRun(self.warner.progress, self.ingester.files if self.ingester is not None else 0)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """A query's failure as the one-line error a micro-batch raised, where it was one of ours."""
        try:
            yield
        except PySparkException as err:
            raise _first_error(err, self.warner, self.ingester) from None


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
        storage.makedirs(self.landing, self.config)  # a folder nothing has landed in yet is watched too
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


def _first_error(err: PySparkException, warner: Warner, ingester: _Ingester | None) -> Exception:
    """The one-line error a micro-batch raised, where it was one of ours; else Spark's."""
    for holder in (ingester, warner):
        if holder is not None and holder.error is not None:
            return holder.error
    return err
