"""Per-event cost of every pipeline step at one size, and the daily incremental step against the full recomputation.

    .venv/bin/python bench/bench_scale.py --events 1000000
    .venv/bin/python bench/bench_scale.py --events 10000000
    .venv/bin/python bench/bench_scale.py --events 20000000
    .venv/bin/python bench/bench_scale.py --events 150000 --breakdown   # development size, and where the time goes

What it measures, on a fresh lakehouse under ``bench/out/scale/`` (each repeat starts again):

1. generate: ``generate`` (``users = events // 130``, from 2026-01-01) and ``write_landing``
   of the first 150 days as landing files (``--format``, JSON lines by default, 8 files).
   The data is generated for 151 days and split on the event time, so the 151st day (the
   "new day", 2026-05-31) continues the same users: generating 150 days alone would give
   other users and sessions (the generator's draws depend on the length of the data).
2. ingest: ``churn_spark.ingest.ingest`` of those files into a fresh lakehouse.
3. rollup full: the first ``run_rollup`` (every day of ``user_daily``).
4. features, rollup: ``run_features`` for 4 snapshots (2026-03-01, then every 14 days) folded
   from ``user_daily`` (its incremental ``run_rollup`` finds nothing to do and is included).
5. features, events: the same 4 snapshots with ``from_events=True`` (the reference path).
6. score: ``run_scoring`` at the last snapshot, with the MLP (preprocessing fitted on those
   features, seeded untrained weights: inference costs the same whatever the weights)
   registered in a scratch MLflow under the output folder, as ``bench/bench_score.py`` does.

Then the daily step: the new day's events are landed and ingested (timed, not part of the
ratio) and, for T = the day after it (2026-06-01), it times
(a) ``run_rollup`` (incremental: the new day and the week before it, 8 days) plus
``run_features(..., [T])`` from the rollup, against (b) ``run_features(..., [T], from_events=True)``,
and prints the ratio (a)/(b) (goal <= 0.1) and the rollup's share; then a ``run_rollup``
with no new events (goal: seconds).

Every step prints seconds and µs per event (events: the rows of the ``events`` table after
the first ingest; the daily steps are divided by the same figure, so that they show whether
their cost grows with the history), the peak resident memory of this process and its
children (the JVM, the Python workers), and a markdown row for ``bench/RESULTS.md``.

``--breakdown`` adds, for the daily step, where the time goes (Spark's ``noop`` sink, nothing
written): the change-feed read that finds the touched days, the 8 days' partials, the scan of
``user_daily`` over T's history, the fold to features, and the same for the events path.

Spark as in ``bench/bench_features.py``: ``local[2]``, 8 shuffle partitions; driver memory
12g (the JVM heap in local mode: 20M events on the 24 GiB development VM, leaving room for
the Python workers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from bench_features import MIB, PeakRss
from churn_spark import tables
from churn_spark.config import Config, load_config
from churn_spark.features import catalogue, compute_features, features_from_daily
from churn_spark.features.service import FOLLOW_UP_DAYS
from churn_spark.generate import GenerateSpec, generate, write_landing
from churn_spark.ingest import ingest
from churn_spark.rollup import daily_rows, run_rollup
from churn_spark.score import run_scoring
from churn_spark.snapshots import read_first_events, read_inputs, run_features
from churn_spark.spark import get_spark
from churn_spark.train import preprocess
from churn_spark.train.bundle import Bundle
from churn_spark.train.model import build_model
from churn_spark.train.tracking import register_bundle

OUT = Path(__file__).resolve().parent / "out" / "scale"
EVENTS_PER_USER = 130  # measured: ~130 events per user over 150 days
DAYS, START = 150, dt.date(2026, 1, 1)
NEW_DAY = START + dt.timedelta(days=DAYS)  # the 151st day, landed and ingested on its own
DAILY_T = NEW_DAY + dt.timedelta(days=1)
FIRST_SNAPSHOT, SNAPSHOT_STEP_DAYS, SNAPSHOTS = dt.date(2026, 3, 1), 14, 4
DATES = [FIRST_SNAPSHOT + dt.timedelta(days=SNAPSHOT_STEP_DAYS * k) for k in range(SNAPSHOTS)]
PARTITIONS = 8  # landing files
SPARK_SETTINGS = [
    "spark.master=local[2]",
    "spark.settings.spark.driver.memory=12g",
    "spark.settings.spark.sql.shuffle.partitions=8",
    "spark.settings.spark.ui.enabled=false",
    "spark.settings.spark.ui.showConsoleProgress=false",
]


@dataclass(frozen=True)
class Timing:
    """One timed step of one repeat."""

    seconds: float
    peak_mib: float


def _config(root: Path, fmt: str) -> Config:
    return load_config(None, [*SPARK_SETTINGS, f"lakehouse={root / 'lakehouse'}",
                              f"mlflow.tracking_uri={root / 'mlruns'}", f"generate.format={fmt}"])


def timed(step: Callable[[], object]) -> tuple[Timing, object]:
    """Run ``step``; its time, peak memory (this process and its children) and result."""
    with PeakRss(children=True) as rss:
        began = time.perf_counter()
        result = step()
        seconds = time.perf_counter() - began
    return Timing(seconds, rss.peak_bytes / MIB), result


def _on_new_day() -> Column:
    """A landing row's event_time (ISO-8601 text) is on NEW_DAY; rows with a broken time stay
    with the first 150 days, where ingest quarantines them."""
    return F.coalesce(F.col("event_time").startswith(NEW_DAY.isoformat()), F.lit(False))


def land(spark: SparkSession, events: int, landing: Path, fmt: str) -> Callable[[bool], None]:
    """A writer of the landing files: the first 150 days (False) or the new day (True)."""
    spec = GenerateSpec(users=max(1, events // EVENTS_PER_USER), days=DAYS + 1, start=START)

    def write(new_day: bool) -> None:
        raw_events, raw_users = generate(spark, spec)
        chosen = raw_events.where(_on_new_day() if new_day else ~_on_new_day())
        write_landing(chosen, raw_users, str(landing / ("day" if new_day else "base")), fmt, PARTITIONS)
    return write


def register_model(spark: SparkSession, config: Config, root: Path, as_of: dt.date) -> None:
    """The MLP, preprocessing fitted on the features at ``as_of`` and seeded untrained weights,
    registered in the scratch MLflow (``bench/bench_score.py``'s model)."""
    base = tables.read_table(spark, config, "user_features").where(F.col("snapshot_date") == F.lit(as_of))
    features = catalogue(config.features)
    prep = preprocess.fit(base, [f.name for f in features if f.dtype != "string"],
                          [f.name for f in features if f.dtype == "string"])
    network = build_model("mlp", len(prep.numeric), prep.cardinalities(), torch.device("cpu"), seed=0)
    Bundle("mlp", network.state_dict(), prep).save(str(root / "mlp.pt"))
    register_bundle(config, root / "mlp.pt")


def _noop(frame: DataFrame) -> None:
    frame.write.format("noop").mode("overwrite").save()


def breakdown(spark: SparkSession, config: Config, covered: int) -> dict[str, Timing]:
    """Where the daily step's time goes, each part to the ``noop`` sink: the parts of an
    incremental rollup of the new day (events version ``covered`` on) and of the features at
    DAILY_T from the rollup and from the events."""
    events, users = read_inputs(spark, config)
    firsts = read_first_events(spark, config)
    settings, history = config.features, config.features.history_days
    days = [NEW_DAY - dt.timedelta(days=k) for k in range(FOLLOW_UP_DAYS, -1, -1)]
    needed = sorted({d + dt.timedelta(days=k) for d in days for k in range(FOLLOW_UP_DAYS + 1)})
    daily = tables.read_table(spark, config, "user_daily")
    window = daily.where(F.col("day").between(DAILY_T - dt.timedelta(days=history), DAILY_T))
    in_history = events.where(F.col("event_date") >= DAILY_T - dt.timedelta(days=history))
    parts: dict[str, Callable[[], object]] = {
        "rollup: change feed -> touched days": lambda: tables.changes(
            spark, config, "events", covered + 1, tables.version(spark, config, "events"))
        .select("event_date").distinct().collect(),
        "rollup: partials of the 8 days (noop)": lambda: _noop(
            daily_rows(events.where(F.col("event_date").isin(needed)), days)),
        "features: scan user_daily over T's history (noop)": lambda: _noop(window),
        "features: fold user_daily -> features (noop)": lambda: _noop(
            features_from_daily(daily, users, [DAILY_T], settings, firsts)),
        "events: scan events over T's history (noop)": lambda: _noop(in_history),
        "events: compute_features from events (noop)": lambda: _noop(
            compute_features(events, users, [DAILY_T], settings, firsts)),
    }
    return {name: timed(part)[0] for name, part in parts.items()}


def run_once(spark: SparkSession, config: Config, root: Path, events: int, fmt: str,
             with_breakdown: bool) -> tuple[dict[str, Timing], dict[str, object]]:
    """Every step once on a fresh lakehouse; the timings and what the steps reported."""
    shutil.rmtree(root, ignore_errors=True)
    landing, write = root / "landing", land(spark, events, root / "landing", fmt)
    out: dict[str, Timing] = {}
    facts: dict[str, object] = {}

    def step(name: str, run: Callable[[], object]) -> object:
        out[name], result = timed(run)
        print(f"  {name:<34} {out[name].seconds:8.2f} s  peak {out[name].peak_mib:>7,.0f} MiB", flush=True)
        return result

    step("generate", lambda: write(False))
    step("ingest", lambda: ingest(spark, config, str(landing / "base" / "events"),
                                  str(landing / "base" / "users"), fmt))
    facts["events"] = tables.read_table(spark, config, "events").count()
    facts["users"] = tables.read_table(spark, config, "users").count()
    facts["rollup_full"] = step("rollup full", lambda: run_rollup(spark, config))
    facts["daily_rows"] = tables.read_table(spark, config, "user_daily").count()
    step("features, 4 snapshots, rollup", lambda: run_features(spark, config, DATES))
    step("features, 4 snapshots, events", lambda: run_features(spark, config, DATES, from_events=True))
    register_model(spark, config, root, DATES[-1])
    step("score, last snapshot", lambda: run_scoring(spark, config, DATES[-1]))

    write(True)  # the new day's landing files (untimed: a day's generation costs the whole data's)
    covered = tables.version(spark, config, "events")
    step("daily: ingest the new day", lambda: ingest(spark, config, str(landing / "day" / "events"), None, fmt))
    facts["day_events"] = tables.read_table(spark, config, "events").where(
        F.col("event_date") == F.lit(NEW_DAY)).count()
    facts["rollup_day"] = step("daily: rollup incremental", lambda: run_rollup(spark, config))
    step("daily: features at T, rollup", lambda: run_features(spark, config, [DAILY_T]))
    step("daily: features at T, events", lambda: run_features(spark, config, [DAILY_T], from_events=True))
    facts["rollup_again"] = step("daily: rollup, no new events", lambda: run_rollup(spark, config))
    if with_breakdown:
        for name, timing in breakdown(spark, config, covered).items():
            out[f"  {name}"] = timing
            print(f"    {name:<50} {timing.seconds:8.2f} s", flush=True)
    return out, facts


def report(runs: list[dict[str, Timing]], facts: dict[str, object], fmt: str) -> None:
    """Medians of the repeats: a line per step, the daily ratios, and markdown rows."""
    events = int(facts["events"])
    med = {name: Timing(statistics.median(r[name].seconds for r in runs), max(r[name].peak_mib for r in runs))
           for name in runs[0]}
    daily_a = med["daily: rollup incremental"].seconds + med["daily: features at T, rollup"].seconds
    daily_b = med["daily: features at T, events"].seconds
    print(f"\n{dt.date.today()}: {events:,} events ({facts['users']:,} users, {DAYS} days from {START}, {fmt}); "
          f"user_daily {facts['daily_rows']:,} rows; snapshots {', '.join(map(str, DATES))}; "
          f"new day {NEW_DAY} with {facts['day_events']:,} events, T = {DAILY_T}; medians of {len(runs)} run(s)")
    for name in ("rollup_full", "rollup_day", "rollup_again"):
        print(f"  {facts[name].summary()}")
    print(f"  daily incremental (rollup + features from it) {daily_a:.2f} s vs full recomputation "
          f"{daily_b:.2f} s: ratio {daily_a / daily_b:.3f} (goal <= 0.1); rollup alone "
          f"{med['daily: rollup incremental'].seconds / daily_b:.3f}, features from the rollup alone "
          f"{med['daily: features at T, rollup'].seconds / daily_b:.3f}")
    print("\n| step | events | seconds | µs/event | peak memory |\n|---|---|---|---|---|")
    for name, timing in med.items():
        print(f"| {name.strip()} | {events:,} | {timing.seconds:.2f} | {1e6 * timing.seconds / events:.2f} "
              f"| {timing.peak_mib / 1024:.1f} GiB |")


def main(events: int, repeats: int, fmt: str, with_breakdown: bool) -> None:
    if events < EVENTS_PER_USER or repeats < 1:
        raise ValueError(f"events must be >= {EVENTS_PER_USER} and repeats >= 1, got {events}, {repeats}")
    config = _config(OUT, fmt)
    spark = get_spark(config.spark)
    runs, facts = [], {}
    for repeat in range(1, repeats + 1):
        print(f"repeat {repeat} of {repeats}:", flush=True)
        timings, facts = run_once(spark, config, OUT, events, fmt, with_breakdown)
        runs.append(timings)
    report(runs, facts, fmt)
    spark.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to generate (about)")
    parser.add_argument("--repeats", type=int, default=1, help="fresh runs of every step; medians reported")
    parser.add_argument("--format", default="jsonl", choices=("jsonl", "parquet", "csv"), help="landing files")
    parser.add_argument("--breakdown", action="store_true", help="also time the parts of the daily step")
    args = parser.parse_args()
    sys.exit(main(args.events, args.repeats, args.format, args.breakdown))
