"""Generate and ingest throughput at ~1M events, each against DuckDB on the same data.

    .venv/bin/python bench/bench_ingest.py [--events 1000000] [--repeats 3]

Generate: Spark generating and writing JSON lines, vs DuckDB writing the same rows as JSON
lines (pure write cost: the floor for any generator). Ingest: the full Spark ingest
(read, validate, quarantine, dedup, Delta MERGE, log) vs DuckDB reading the same files,
applying the same rules, deduplicating and writing partitioned Parquet (no Delta, no
quarantine, no log). Re-ingest: the same ingest again over the same folder, whose files are
all in ``ingest_log`` and skipped before they are parsed. Prints rows/s and the Spark/DuckDB
ratio, the re-ingest's seconds and its ratio to the first ingest, medians of the repeats.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import time
from pathlib import Path

import duckdb

from churn_spark.config import load_config
from churn_spark.generate import GenerateSpec, generate, write_landing
from churn_spark.ingest import ingest
from churn_spark.spark import get_spark

OUT = Path(__file__).resolve().parent / "out"
EVENTS_PER_USER = 130  # measured: ~130 events per user over 150 days

DUCK_INGEST = """
COPY (
  SELECT * EXCLUDE (rn) FROM (
    SELECT e.*, CAST(ts AS DATE) AS event_date,
           row_number() OVER (PARTITION BY event_id ORDER BY filename, ts) AS rn
    FROM (
      SELECT *, try_cast(event_time AS TIMESTAMPTZ) AS ts
      FROM read_json('{landing}/*.json', format='newline_delimited', filename=true,
                     columns={{event_id: 'VARCHAR', user_id: 'VARCHAR', event_time: 'VARCHAR',
                              event_type: 'VARCHAR', session_id: 'VARCHAR', product_id: 'VARCHAR',
                              category: 'VARCHAR', channel: 'VARCHAR', review_text: 'VARCHAR',
                              price: 'VARCHAR', quantity: 'VARCHAR', dwell_seconds: 'VARCHAR',
                              rating: 'VARCHAR'}})
    ) e
    WHERE coalesce(trim(event_id), '') <> '' AND coalesce(trim(user_id), '') <> ''
      AND ts IS NOT NULL AND ts <= now() + INTERVAL 1 DAY
      AND lower(trim(event_type)) IN ('view', 'cart', 'purchase', 'refund', 'review', 'service')
      AND (price IS NULL OR try_cast(price AS DOUBLE) >= 0)
      AND (quantity IS NULL OR try_cast(quantity AS DOUBLE) >= 1)
      AND (rating IS NULL OR try_cast(rating AS DOUBLE) BETWEEN 1 AND 5)
      AND (dwell_seconds IS NULL OR try_cast(dwell_seconds AS DOUBLE) >= 0)
  ) WHERE rn = 1
) TO '{out}' (FORMAT parquet, PARTITION_BY (event_date), OVERWRITE_OR_IGNORE)
"""


def _timed(step) -> float:
    began = time.perf_counter()
    step()
    return time.perf_counter() - began


def main(events: int, repeats: int) -> None:
    config = load_config(None, [f"lakehouse={OUT / 'lakehouse'}", "spark.settings.spark.ui.showConsoleProgress=false"])
    spark = get_spark(config.spark)
    spec = GenerateSpec(users=max(1, events // EVENTS_PER_USER), days=150, start=dt.date(2026, 1, 1))
    landing = OUT / "landing"
    duck = duckdb.connect()
    duck.execute("SET threads = 2")
    results: dict[str, list[float]] = {k: [] for k in ("gen", "gen_ref", "ingest", "reingest", "ingest_ref")}
    rows = 0
    for repeat in range(repeats):
        shutil.rmtree(OUT, ignore_errors=True)
        frames = generate(spark, spec)
        results["gen"].append(_timed(lambda: write_landing(*frames, str(landing), "jsonl", 8)))
        rows = spark.read.json(str(landing / "events")).count()
        staged = OUT / "staged.parquet"
        duck.execute(f"COPY (SELECT * FROM read_json('{landing}/events/*.json')) TO '{staged}' (FORMAT parquet)")
        results["gen_ref"].append(_timed(lambda: duck.execute(
            f"COPY (SELECT * FROM '{staged}') TO '{OUT / 'duck_landing.json'}' (FORMAT json)")))
        results["ingest"].append(_timed(lambda: ingest(
            spark, config, str(landing / "events"), str(landing / "users"), "jsonl")))
        results["reingest"].append(_timed(lambda: ingest(
            spark, config, str(landing / "events"), str(landing / "users"), "jsonl")))
        results["ingest_ref"].append(_timed(lambda: duck.execute(
            DUCK_INGEST.format(landing=landing / "events", out=OUT / "duck_events"))))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in results.items()), flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"\nevents: {rows:,} ({spec.users:,} users, {spec.days} days), medians of {repeats} runs, "
          f"{dt.date.today()}")
    print(f"generate: {rows / med['gen']:,.0f} rows/s; DuckDB write of the same rows "
          f"{rows / med['gen_ref']:,.0f} rows/s; ratio {med['gen_ref'] / med['gen']:.2f}")
    print(f"ingest:   {rows / med['ingest']:,.0f} rows/s; DuckDB validate+dedup+write "
          f"{rows / med['ingest_ref']:,.0f} rows/s; ratio {med['ingest_ref'] / med['ingest']:.2f}")
    print(f"re-ingest of the same files (all skipped): {med['reingest']:.1f} s; "
          f"{med['reingest'] / med['ingest']:.3f}x the first ingest")
    spark.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    main(args.events, args.repeats)
