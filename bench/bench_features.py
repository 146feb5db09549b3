"""Feature-job throughput at 1M and 10M events, against DuckDB SQL over the same Parquet files.

    .venv/bin/python bench/bench_features.py --events 1000000 --repeats 3
    .venv/bin/python bench/bench_features.py --events 10000000 --repeats 3
    .venv/bin/python bench/bench_features.py --check          # 20k events: outputs must agree

What it measures. Data preparation is not timed: Spark generates ``--events`` synthetic events
(``users = events // 130``, 150 days from 2026-01-01), types them with the contract
(``validate_events`` / ``validate_users``, rows that break a rule dropped, duplicate ids
dropped) and writes them once as plain Parquet under ``bench/out/features/``. Each repeat then
times, on the same files and the same ``--snapshots`` dates (2026-03-01, then every 14 days):

- Spark: ``compute_features`` (every feature of the catalogue, all snapshots in one pass),
  reading the Parquet files and writing its output as Parquet; ``local[2]``, 8 shuffle partitions.
- DuckDB (the reference): ``bench/features_duckdb.sql``, the same catalogue written once by hand
  in SQL, run by ``COPY features TO ... (FORMAT parquet)`` on 2 threads. Review sentiment is the
  project's own ``churn_spark.sentiment.score_text``, registered as a DuckDB Python UDF, so both
  engines score texts with the same models.

It prints, per repeat and as medians: seconds, events/s and microseconds per event (events =
all rows of the events files), peak resident memory, and the ratio Spark time / DuckDB time.
Peak memory is sampled every 0.1 s: for Spark, this process plus all its children (the JVM and
its Python workers); for DuckDB, this process alone (DuckDB runs inside it; the idle Spark JVM
is left out). Both figures include the Python driver's own footprint.

What the reference does and does not do. It computes the same 80 columns for the same
(user_id, snapshot_date) rows (``--check`` compares every value); it reads plain Parquet, not
Delta, in both engines. It does not validate its output schema against the catalogue, it has
the catalogue's windows (7, 30, 90 days; history 180) written into its SQL rather than taken
from the config, and it finds the purchase after each service contact with an ASOF join over
service and purchase events only, where Spark sorts all of a user's events in a window.

``--check`` (20k events unless ``--events`` says otherwise, one repeat) loads both outputs with
pandas and compares the row sets and every column (numbers within 1e-6 relative, text equal);
it prints what differs and exits 1 if anything does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import duckdb
import pandas as pd
import psutil
from duckdb.sqltypes import DOUBLE, VARCHAR
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark.config import FeaturesConfig, load_config
from churn_spark.contract import RECORD, SOURCE_FILE, validate_events, validate_users
from churn_spark.features import KEYS, catalogue, compute_features
from churn_spark.generate import GenerateSpec, generate
from churn_spark.sentiment import score_text
from churn_spark.spark import get_spark

BENCH = Path(__file__).resolve().parent
OUT = BENCH / "out" / "features"
EVENTS, USERS = OUT / "events.parquet", OUT / "users.parquet"
SPARK_OUT, DUCK_OUT = OUT / "spark_out", OUT / "duckdb_out.parquet"
SQL = BENCH / "features_duckdb.sql"

EVENTS_PER_USER = 130  # measured: ~130 events per user over 150 days
DAYS, START = 150, dt.date(2026, 1, 1)
FIRST_SNAPSHOT, SNAPSHOT_STEP_DAYS = dt.date(2026, 3, 1), 14
CHECK_EVENTS = 20_000
SQL_WINDOWS, SQL_HISTORY_DAYS = (7, 30, 90), 180  # what features_duckdb.sql hard-codes
SPARK_SETTINGS = [
    "spark.master=local[2]",
    "spark.settings.spark.sql.shuffle.partitions=8",
    "spark.settings.spark.ui.showConsoleProgress=false",
    "spark.settings.spark.sql.parquet.outputTimestampType=TIMESTAMP_MICROS",
]
MIB = 1024 * 1024


@dataclass(frozen=True)
class Run:
    """One timed run of one engine."""

    seconds: float
    peak_mib: float


class PeakRss:
    """Peak resident memory of this process (and optionally its children), sampled in a thread.

    Parameters
    ----------
    children
        Add the resident memory of every descendant process (the Spark JVM, its Python workers).
    interval
        Seconds between samples.
    """

    def __init__(self, children: bool, interval: float = 0.1) -> None:
        self._process = psutil.Process(os.getpid())
        self._children, self._interval = children, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.peak_bytes = 0

    def __enter__(self) -> PeakRss:
        self.peak_bytes = self._sample()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_bytes = max(self.peak_bytes, self._sample())

    def _sample(self) -> int:
        processes = [self._process] + (self._process.children(recursive=True) if self._children else [])
        total = 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass  # a worker that ended between listing and sampling
        return total


def measure(step: Callable[[], None], children: bool) -> Run:
    """Time ``step`` and sample its peak resident memory."""
    with PeakRss(children) as rss:
        began = time.perf_counter()
        step()
        seconds = time.perf_counter() - began
    return Run(seconds, rss.peak_bytes / MIB)


def snapshot_dates(count: int) -> list[dt.date]:
    """``count`` snapshot dates inside the generated data, two weeks apart.

    Raises
    ------
    ValueError
        If ``count`` is below 1 or the last date would leave the data.
    """
    if count < 1:
        raise ValueError(f"snapshots: give at least 1, got {count}")
    dates = [FIRST_SNAPSHOT + dt.timedelta(days=SNAPSHOT_STEP_DAYS * k) for k in range(count)]
    if dates[-1] > START + dt.timedelta(days=DAYS):
        raise ValueError(f"snapshots: {count} dates run past the data's end ({START + dt.timedelta(days=DAYS)})")
    return dates


def _typed(raw: DataFrame, validate: Callable[[DataFrame], DataFrame], key: str) -> DataFrame:
    """Landing rows as contract-typed rows: rows breaking a rule and repeated keys dropped."""
    landed = raw.withColumn(RECORD, F.lit("")).withColumn(SOURCE_FILE, F.lit(""))
    valid = validate(landed).where(F.size("reasons") == 0).dropDuplicates([key])
    return valid.drop("reasons", RECORD, SOURCE_FILE)


def prepare_data(spark: SparkSession, events: int) -> tuple[int, int]:
    """Generate, type and write the events and users once as Parquet; return their row counts."""
    spec = GenerateSpec(users=max(1, events // EVENTS_PER_USER), days=DAYS, start=START)
    raw_events, raw_users = generate(spark, spec)
    ingested_at = dt.datetime.combine(START + dt.timedelta(days=DAYS + 1), dt.time(), dt.timezone.utc)
    typed_events = _typed(raw_events, lambda frame: validate_events(frame, ingested_at), "event_id")
    typed_users = _typed(raw_users, validate_users, "user_id")
    shutil.rmtree(OUT, ignore_errors=True)
    typed_events.repartition(8).write.parquet(str(EVENTS))
    typed_users.repartition(2).write.parquet(str(USERS))
    return spark.read.parquet(str(EVENTS)).count(), spark.read.parquet(str(USERS)).count()


def run_spark(spark: SparkSession, dates: Sequence[dt.date], settings: FeaturesConfig) -> None:
    """The Spark feature job over the Parquet files, its output written as Parquet."""
    features = compute_features(spark.read.parquet(str(EVENTS)), spark.read.parquet(str(USERS)),
                                dates, settings)
    features.write.mode("overwrite").parquet(str(SPARK_OUT))


def duckdb_connection(dates: Sequence[dt.date]) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the inputs, the snapshots, the sentiment UDF and the ``features`` view."""
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET TimeZone = 'UTC'")
    con.create_function("sentiment", score_text, [VARCHAR], DOUBLE)
    con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet('{EVENTS}/*.parquet')")
    con.execute(f"CREATE VIEW users AS SELECT * FROM read_parquet('{USERS}/*.parquet')")
    con.execute("CREATE TABLE snapshots AS SELECT d AS snapshot_date, epoch_us(CAST(d AS TIMESTAMP)) AS t_us "
                "FROM unnest($1::DATE[]) AS t(d)", [list(dates)])
    con.execute(SQL.read_text())
    return con


def run_duckdb(con: duckdb.DuckDBPyConnection) -> None:
    """The reference: every feature in DuckDB SQL, written as Parquet."""
    con.execute(f"COPY features TO '{DUCK_OUT}' (FORMAT parquet)")


def _line(name: str, run: Run, events: int) -> str:
    return (f"{name} {run.seconds:7.2f} s  {events / run.seconds:>10,.0f} events/s  "
            f"{1e6 * run.seconds / events:6.2f} us/event  peak {run.peak_mib:>7,.0f} MiB")


def report_repeat(repeat: int, spark_run: Run, duck_run: Run, events: int) -> None:
    """Print one repeat's figures."""
    print(f"repeat {repeat}:\n  {_line('spark ', spark_run, events)}\n  {_line('duckdb', duck_run, events)}\n"
          f"  ratio spark/duckdb {spark_run.seconds / duck_run.seconds:.2f}", flush=True)


def report_medians(spark_runs: list[Run], duck_runs: list[Run], events: int, users: int,
                   dates: Sequence[dt.date]) -> None:
    """Print the medians of the repeats, with what was run."""
    med = {name: Run(statistics.median(r.seconds for r in runs), statistics.median(r.peak_mib for r in runs))
           for name, runs in (("spark", spark_runs), ("duckdb", duck_runs))}
    print(f"\n{dt.date.today()}: {events:,} events, {users:,} users, {DAYS} days from {START}, "
          f"{len(dates)} snapshots ({', '.join(map(str, dates))}), medians of {len(spark_runs)} run(s)")
    print(f"  {_line('spark ', med['spark'], events)}\n  {_line('duckdb', med['duckdb'], events)}")
    print(f"  ratio spark/duckdb {med['spark'].seconds / med['duckdb'].seconds:.2f}")


def _column_problems(both: pd.DataFrame, name: str, dtype: str) -> list[str]:
    """Rows of ``both`` (the two outputs joined on the keys) where column ``name`` differs."""
    left, right = both[f"{name}_spark"], both[f"{name}_duckdb"]
    if dtype == "string":
        same = (left == right) | (left.isna() & right.isna())
    else:
        a, b = left.astype("float64"), right.astype("float64")
        same = ((a - b).abs() <= 1e-6 * a.abs().clip(lower=1.0)) | (a.isna() & b.isna())
    wrong = both.loc[~same, [*KEYS, f"{name}_spark", f"{name}_duckdb"]]
    if wrong.empty:
        return []
    return [f"{name}: {len(wrong)} of {len(both)} rows differ, e.g.\n{wrong.head(5).to_string(index=False)}"]


def compare_outputs(settings: FeaturesConfig) -> list[str]:
    """Every difference between the Spark and DuckDB outputs: columns, types, rows, values."""
    spark_out, duck_out = pd.read_parquet(SPARK_OUT), pd.read_parquet(DUCK_OUT)
    features = catalogue(settings)
    expected = [*KEYS, *(f.name for f in features)]
    problems = [f"{engine} columns differ from the catalogue: {sorted(set(frame.columns) ^ set(expected))}"
                for engine, frame in (("spark", spark_out), ("duckdb", duck_out)) if list(frame.columns) != expected]
    if problems:
        return problems
    problems += [f"{c}: dtype spark {spark_out[c].dtype}, duckdb {duck_out[c].dtype}"
                 for c in expected if spark_out[c].dtype != duck_out[c].dtype]
    joined = spark_out.merge(duck_out, on=list(KEYS), how="outer", suffixes=("_spark", "_duckdb"), indicator=True)
    for side, engine in (("left_only", "spark"), ("right_only", "duckdb")):
        only = joined.loc[joined["_merge"] == side, list(KEYS)]
        if not only.empty:
            problems.append(f"{len(only)} rows only in {engine}, e.g.\n{only.head(5).to_string(index=False)}")
    both = joined[joined["_merge"] == "both"]
    for feature in features:
        problems += _column_problems(both, feature.name, feature.dtype)
    print(f"check: {len(spark_out):,} spark rows, {len(duck_out):,} duckdb rows, {len(both):,} matched, "
          f"{len(features)} features compared")
    return problems


def _settings() -> tuple[SparkSession, FeaturesConfig]:
    config = load_config(None, SPARK_SETTINGS)
    if tuple(config.features.windows) != SQL_WINDOWS or config.features.history_days != SQL_HISTORY_DAYS:
        raise ValueError(f"features config: the DuckDB SQL is written for windows {SQL_WINDOWS} and history "
                         f"{SQL_HISTORY_DAYS}; got {config.features.windows}, {config.features.history_days}")
    return get_spark(config.spark), config.features


def main(events: int, repeats: int, snapshots: int, check: bool) -> int:
    """Prepare the data, time both engines ``repeats`` times, report; with ``check``, compare outputs."""
    if events < EVENTS_PER_USER or repeats < 1:
        raise ValueError(f"events must be >= {EVENTS_PER_USER} and repeats >= 1, got {events}, {repeats}")
    dates = snapshot_dates(snapshots)
    spark, settings = _settings()
    rows, users = prepare_data(spark, events)
    con = duckdb_connection(dates)
    spark_runs, duck_runs = [], []
    for repeat in range(1, repeats + 1):
        spark_runs.append(measure(lambda: run_spark(spark, dates, settings), children=True))
        duck_runs.append(measure(lambda: run_duckdb(con), children=False))
        report_repeat(repeat, spark_runs[-1], duck_runs[-1], rows)
    report_medians(spark_runs, duck_runs, rows, users, dates)
    spark.stop()
    if not check:
        return 0
    problems = compare_outputs(settings)
    print("\n".join(problems) if problems else "check passed: the outputs agree")
    return 1 if problems else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=None, help="events to generate (default 1M; 20k with --check)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per engine (default 3; 1 with --check)")
    parser.add_argument("--snapshots", type=int, default=4, help="snapshot dates, two weeks apart from 2026-03-01")
    parser.add_argument("--check", action="store_true",
                        help="small data; compare the two outputs, exit 1 on a difference")
    args = parser.parse_args()
    default_events, default_repeats = (CHECK_EVENTS, 1) if args.check else (1_000_000, 3)
    sys.exit(main(args.events or default_events, args.repeats or default_repeats, args.snapshots, args.check))
