"""Scoring throughput: the Spark scoring job against in-process torch inference of the same model.

    .venv/bin/python bench/bench_score.py [--users 1000000] [--repeats 3] [--base-users 4000]

Data: ``--base-users`` generated users are ingested and their features computed at one
snapshot (real feature distributions); those rows are repeated under new user ids up to
``--users`` and stored as the ``user_features`` partition of T (and of T - 14 days, the
"previous run" the alerts compare with). Model: the MLP with preprocessing fitted on those
features and seeded, untrained weights, registered in a scratch MLflow; inference costs the
same whatever the weights.

Measured on the same rows, medians over ``--repeats``:
1. In-process (the limit): the feature rows already in pandas, scored in batches of 10,000 in
   this process with all cores to torch: ``Bundle.predict_proba`` (preprocess + forward) and
   ``Scorer.predict`` (the same plus gradient x input reasons as text).
2. Spark: ``score_users`` (the iterator pandas UDF) over the Delta partition, written to
   Spark's ``noop`` sink, without and with reasons; ``score_probabilities`` (preprocessing in
   Spark, two array columns into ``mapInArrow``: what the job runs with ``score.reasons: 0``).
   Ratios Spark / in-process (goal >= 0.5).
   And the transfer alone: a ``mapInPandas`` over the feature columns that returns the ids.
3. End to end: ``run_scoring`` (with reasons) (read, check, score, tier, write ``churn_scores``) and
   ``run_alerts`` (compare with the previous run, write ``alerts``, exports, summary).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import torch
from pyspark.sql import functions as F

from churn_spark import tables
from churn_spark.alerts import run_alerts
from churn_spark.config import Config, load_config
from churn_spark.features import KEYS, catalogue
from churn_spark.ingest import ingest
from churn_spark.pipeline import generate_landing
from churn_spark.score import Scorer, run_scoring, score_probabilities, score_users
from churn_spark.snapshots import run_features
from churn_spark.spark import get_spark
from churn_spark.train import preprocess
from churn_spark.train.bundle import Bundle
from churn_spark.train.model import build_model
from churn_spark.train.tracking import register_bundle

START = dt.date(2026, 1, 1)
T = START + dt.timedelta(days=175)
PREVIOUS = T - dt.timedelta(days=14)
BATCH = 10_000


def _config(root: Path, base_users: int) -> Config:
    return load_config("conf/local.yaml", [
        "spark.master=local[2]", "spark.settings.spark.driver.memory=8g", "spark.settings.spark.ui.enabled=false",
        "spark.settings.spark.ui.showConsoleProgress=false", "spark.settings.spark.sql.shuffle.partitions=4",
        f"lakehouse={root / 'lakehouse'}", f"mlflow.tracking_uri={root / 'mlruns'}",
        f"generate.users={base_users}", "generate.days=176", "generate.format=parquet"])


def prepare(spark, config: Config, root: Path, users: int) -> Bundle:
    """Features of ``users`` users at T and PREVIOUS in Delta; the registered model's bundle."""
    generate_landing(spark, config.generate, str(root / "landing"))
    ingest(spark, config, str(root / "landing" / "events"), str(root / "landing" / "users"), "parquet")
    run_features(spark, config, [T])
    base = tables.read_table(spark, config, "user_features").where(F.col("snapshot_date") == F.lit(T)).persist()
    copies = -(-users // base.count())
    big = (base.crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
           .withColumn("user_id", F.concat_ws("-", "user_id", F.col("copy").cast("string"))).drop("copy")
           .limit(users).repartition(8))
    tables.replace_dates(big, config, "user_features", [T])
    previous = tables.read_table(spark, config, "user_features").where(F.col("snapshot_date") == F.lit(T))
    tables.replace_dates(previous.withColumn("snapshot_date", F.lit(PREVIOUS)), config, "user_features", [PREVIOUS])
    features = catalogue(config.features)
    prep = preprocess.fit(base, [f.name for f in features if f.dtype != "string"],
                          [f.name for f in features if f.dtype == "string"])
    network = build_model("mlp", len(prep.numeric), prep.cardinalities(), torch.device("cpu"), seed=0)
    bundle = Bundle("mlp", network.state_dict(), prep)
    bundle.save(str(root / "mlp.pt"))
    register_bundle(config, root / "mlp.pt")
    base.unpersist()
    return bundle


def timed(step: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one untimed warm-up (Python workers, caches)."""
    step()
    seconds = []
    for _ in range(repeats):
        began = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def _ids(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """The JVM -> Arrow -> pandas round trip of the feature columns, no model."""
    for batch in batches:
        yield batch[["user_id"]]


def main(users: int, repeats: int, base_users: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_score_"))
    config = _config(root, base_users)
    spark = get_spark(config.spark)
    bundle = prepare(spark, config, root, users)
    features = tables.read_table(spark, config, "user_features").where(F.col("snapshot_date") == F.lit(T))
    rows = features.toPandas()
    n = len(rows)
    batches = [rows.iloc[i:i + BATCH] for i in range(0, n, BATCH)]
    torch.set_num_threads(2)
    network, scorer = bundle.network(), Scorer(bundle, config.features, 3)
    raw = timed(lambda: [bundle.predict_proba(b, network) for b in batches], repeats)
    full = timed(lambda: [scorer.predict(b) for b in batches], repeats)
    batches.clear()  # free the in-process copy before Spark runs
    del rows

    def spark_scoring(reasons: int) -> float:
        return timed(lambda: score_users(features, bundle, config.features, reasons)
                     .write.format("noop").mode("overwrite").save(), repeats)

    spark_raw, spark_full = spark_scoring(0), spark_scoring(3)
    arrays = timed(lambda: score_probabilities(features, bundle, [*KEYS])
                   .write.format("noop").mode("overwrite").save(), repeats)
    transfer = timed(lambda: features.select("user_id", *bundle.features).mapInPandas(_ids, "user_id string")
                     .write.format("noop").mode("overwrite").save(), repeats)
    run_scoring(spark, config, PREVIOUS)  # the previous run the alerts compare with
    scoring = timed(lambda: run_scoring(spark, config, T), repeats)
    alerting = timed(lambda: run_alerts(spark, config, T), repeats)
    summary = run_alerts(spark, config, T)
    print(f"users {n:,}; MLP on {len(bundle.features)} features; median of {repeats}; 2 cores")
    print(f"in-process predict_proba (probabilities)     {raw:8.2f} s  {n / raw:>12,.0f} rows/s")
    print(f"in-process Scorer.predict (+ 3 reasons)      {full:8.2f} s  {n / full:>12,.0f} rows/s")
    print(f"Spark pandas UDF, probabilities only         {spark_raw:8.2f} s  {n / spark_raw:>12,.0f} rows/s"
          f"  ratio {raw / spark_raw:.2f}")
    print(f"Spark mapInArrow, two arrays (reasons: 0)    {arrays:8.2f} s  {n / arrays:>12,.0f} rows/s"
          f"  ratio {raw / arrays:.2f}")
    print(f"Spark pandas UDF, + 3 reasons                {spark_full:8.2f} s  {n / spark_full:>12,.0f} rows/s"
          f"  ratio {full / spark_full:.2f}")
    print(f"Spark transfer only (mapInPandas returning the ids) {transfer:8.2f} s")
    print(f"end to end: run_scoring (Delta in -> churn_scores) {scoring:8.2f} s  {n / scoring:>12,.0f} rows/s")
    print(f"end to end: run_alerts (vs previous run, exports)  {alerting:8.2f} s")
    print(f"tiers {summary.tiers}; new alerts {summary.new_alerts}")
    spark.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--base-users", type=int, default=4000)
    args = parser.parse_args()
    main(args.users, args.repeats, args.base_users)
