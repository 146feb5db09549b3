"""Latency of real-time warnings: from an event file landing to its warning row, at steady rates.

    .venv/bin/python bench/bench_stream.py                       # 4,000 users; 10, 30, 100 events/s
    .venv/bin/python bench/bench_stream.py --rates 10,30,100,300 --seconds 90

What it does, on a fresh lakehouse under ``bench/out/stream/``:

1. Generates ``--users`` users over 120 days from 2026-01-01, ingests them, builds the rollup.
2. Registers a logistic regression with hand-set weights (``tests/test_stream.py``'s: service
   contacts and refunds in the last 30 days raise the logit by 1.5 each), so that a bad day
   warns every user it reaches; the model's kind does not change what the pipeline costs.
3. Scores everybody at day E (the day after the data): the day's baseline. This batch run,
   timed, is the reference: what re-scoring the whole population costs once.
4. Runs ``churn-spark stream --trigger available-now`` once (the first start: the checkpoint),
   then the continuous query (``--trigger 10s`` with ``--landing``) in a thread of this process.
5. For each rate, a phase on a day of its own (E, E+1, ...: a warning is once per user, kind
   and day): every ``--interval`` seconds one JSON-lines file lands in the landing folder
   whole (``generate.land_rows``), with rate x interval events: per chosen user (never twice in
   a phase), a ``generate.bad_day``: two service contacts and a refund.
6. Waits for the queries to drain, stops them, and joins each user's first warning of the
   phase with the time its file landed. A warning's time is the modification time of the
   Delta data file holding it (``_metadata.file_modification_time``: written just before the
   commit), so the merge itself is inside the latency.

Prints per rate: files, events, the events/s actually sustained, the users warned and those
no rule warns (already high, lapsed, or a rise under 0.2: a heavy buyer's bad day leaves them
low), p50 / p95 / max latency in seconds of the warned, and p95 / 60 s (goal <= 1 with a 10 s trigger);
then a markdown row per rate for ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

from pyspark.sql import functions as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from churn_spark import tables  # noqa: E402
from churn_spark.config import Config, load_config  # noqa: E402
from churn_spark.generate import GenerateSpec, bad_day, generate, land_rows, write_landing  # noqa: E402
from churn_spark.ingest import ingest  # noqa: E402
from churn_spark.rollup import run_rollup  # noqa: E402
from churn_spark.score import run_scoring  # noqa: E402
from churn_spark.spark import get_spark  # noqa: E402
from churn_spark.stream import run_stream  # noqa: E402
from churn_spark.train.preprocess import Preprocessing  # noqa: E402
from tests.builders import lr_bundle, register  # noqa: E402

OUT = Path(__file__).resolve().parent / "out" / "stream"
START, DAYS = dt.date(2026, 1, 1), 120
DAY_E = START + dt.timedelta(days=DAYS)
GOAL_P95 = 60.0
SPARK_SETTINGS = [
    "spark.master=local[2]",
    "spark.settings.spark.driver.memory=6g",
    "spark.settings.spark.sql.shuffle.partitions=4",
    "spark.settings.spark.ui.enabled=false",
    "spark.settings.spark.ui.showConsoleProgress=false",
]
PREP = Preprocessing(numeric={"refunds_30d": (0.0, 1.0), "service_contacts_30d": (0.0, 1.0),
                              "purchases_30d": (1.0, 1.0)}, categorical={"membership_level": ["gold", "silver"]})


def _config(trigger: str) -> Config:
    return load_config(None, [*SPARK_SETTINGS, f"lakehouse={OUT / 'lakehouse'}",
                              f"mlflow.tracking_uri={OUT / 'mlruns'}", "score.tiers_by=probability", "score.high=0.8",
                              "score.medium=0.3", "score.reasons=3", "stream.clock=events",
                              f"stream.trigger={trigger}"])


def prepare(spark, config: Config, users: int) -> tuple[float, list[str]]:
    """Data, rollup, model and the baseline run at DAY_E; the baseline's seconds and the users
    in the model's population (a bad day warns them)."""
    raw_events, raw_users = generate(spark, GenerateSpec(users=users, days=DAYS, start=START))
    write_landing(raw_events, raw_users, str(OUT / "base"), "jsonl", 4)
    ingest(spark, config, str(OUT / "base" / "events"), str(OUT / "base" / "users"), "jsonl")
    run_rollup(spark, config)
    register(config, lr_bundle(PREP, weights=(1.5, 1.5, -1.0), category=(0.0, 0.0, 0.0), bias=-1.0),
             OUT / "lr.pt")
    began = time.perf_counter()
    run_scoring(spark, config, DAY_E)
    seconds = time.perf_counter() - began
    active = (tables.read_table(spark, config, "churn_scores").where(F.col("risk_tier") != "lapsed")
              .select("user_id").collect())
    return seconds, sorted(r["user_id"] for r in active)


def feed(landing: Path, day: dt.date, rate: float, seconds: float, interval: float, users: list[str],
         phase: int) -> dict[str, float]:
    """Land one file every ``interval`` seconds for ``seconds``; each user's landing time."""
    per_file = max(1, round(rate * interval / 3))  # a bad day is three events
    chosen = random.Random(phase).sample(users, len(users))
    landed: dict[str, float] = {}
    began, number = time.time(), 0
    while time.time() - began < seconds and number * per_file < len(chosen):
        batch = chosen[number * per_file:(number + 1) * per_file]
        land_rows(bad_day(batch, day, f"bench-{phase}"), str(landing / f"{phase}-{number:05d}.jsonl"))
        landed.update(dict.fromkeys(batch, time.time()))
        number += 1
        time.sleep(max(0.0, began + number * interval - time.time()))
    return landed


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(users: int, rates: list[float], seconds: float, interval: float, drain: float, trigger: str) -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "landing").mkdir(parents=True)
    config = _config(trigger)
    spark = get_spark(config.spark)
    batch_seconds, active = prepare(spark, config, users)
    print(f"prepared: {len(active)} users in the population; batch scoring of everybody {batch_seconds:.1f} s")
    run_stream(spark, config, "available-now")  # the first start: rollup, checkpoint, the last ingest re-scored

    total = len(rates) * (seconds + 5) + drain + 120
    runner = threading.Thread(target=run_stream, args=(spark, config, trigger, str(OUT / "landing"), "jsonl"),
                              kwargs={"timeout": total}, daemon=True)
    runner.start()
    time.sleep(20)  # both queries started
    phases = []
    for phase, rate in enumerate(rates):
        day = DAY_E + dt.timedelta(days=phase)
        began = time.time()
        landed = feed(OUT / "landing", day, rate, seconds, interval, active, phase)
        phases.append((rate, day, landed, len(landed) * 3 / max(time.time() - began, 1e-9)))
        time.sleep(5)
    time.sleep(drain)
    for query in spark.streams.active:
        query.stop()
    runner.join(timeout=120)

    warned = (tables.read_table(spark, config, "warnings")
              .select("user_id", "day", F.col("_metadata.file_modification_time").alias("written"))
              .groupBy("user_id", "day").agg(F.min("written").alias("written")).collect())
    written = {(r["user_id"], r["day"]): r["written"].replace(tzinfo=dt.timezone.utc).timestamp() for r in warned}
    print(f"\n{'rate':>6} {'files':>6} {'events':>7} {'ev/s':>7} {'warned':>7} {'no rule':>7} "
          f"{'p50 s':>7} {'p95 s':>7} {'max s':>7} {'p95/60':>7}")
    rows = []
    for rate, day, landed, sustained in phases:
        latencies = [written[(u, day)] - t for u, t in landed.items() if (u, day) in written]
        quiet = len(landed) - len(latencies)
        files = len(set(landed.values()))
        p50, p95 = (statistics.median(latencies), _percentile(latencies, 0.95)) if latencies else (float("nan"),) * 2
        top = max(latencies) if latencies else float("nan")
        print(f"{rate:>6.0f} {files:>6} {len(landed) * 3:>7} {sustained:>7.1f} {len(latencies):>7} {quiet:>7} "
              f"{p50:>7.1f} {p95:>7.1f} {top:>7.1f} {p95 / GOAL_P95:>7.2f}")
        rows.append(f"| {rate:.0f} | {files} | {len(landed) * 3} | {sustained:.1f} | {len(latencies)} | {quiet} "
                    f"| {p50:.1f} | {p95:.1f} | {top:.1f} | {p95 / GOAL_P95:.2f} |")
    print(f"\nreference: batch scoring of all {users} users at one date {batch_seconds:.1f} s")
    print("\n| events/s asked | files | events | events/s sustained | warned | no rule met | p50 s | p95 s | max s "
          "| p95 / 60 s |\n|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=4000)
    parser.add_argument("--rates", default="10,30,100", help="events per second, one phase each")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between landing files")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait after the last file")
    parser.add_argument("--trigger", default="10s")
    args = parser.parse_args()
    main(args.users, [float(r) for r in args.rates.split(",")], args.seconds, args.interval, args.drain, args.trigger)
