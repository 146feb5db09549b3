"""The learnt retention policy against the rule table on a generated world: each policy's true
net value per alerted user beside its off-policy estimates.

    .venv/bin/python bench/bench_policy.py [--users 8000] [--exploration 0.3] [--every 14] [--runs 7]
                                           [--seed 42] [--dump log.parquet]

Not a speed benchmark: the figure issue 14 asks for. One Spark session runs the loop a
deployment runs, on ``--users`` generated users (``generate.days`` 180): ingest, the rollup,
labels, train and register, then for each of ``--runs`` snapshot dates ``--every`` days apart
from 2026-02-26: features (the world's earlier responses included), scoring, alerts with
``--exploration`` of them explored, and the world's response to the week after (``respond``).
Then ``policy_step`` learns the policy from every matured assignment and judges it, the
treat-none, treat-all-high-risk and rule-table policies and the logged policy by IPS, SNIPS and
doubly robust estimates with bootstrap intervals, each beside its true value from the simulator
(``simulate.policy_truth``) on the same rows.

Prints ``PolicyRun.lines()`` and the learnt - rules gap by its truth and by each estimator.
``--dump`` also writes the matured log with the learner's inputs (``x_*``) and every action's
potential outcome from the simulator (``kept_<action>``) to one Parquet file, so that learners
can be compared by their true value offline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from churn_spark import simulate
from churn_spark.alerts import run_alerts
from churn_spark.config import Config, load_config
from churn_spark.ingest import ingest
from churn_spark.pipeline import generate_landing, generate_spec, policy_step, respond
from churn_spark.policy import TRUTH, logged_rows
from churn_spark.rollup import run_rollup
from churn_spark.score import run_scoring
from churn_spark.snapshots import run_features, run_labels
from churn_spark.spark import get_spark
from churn_spark.train.job import run_training

FIRST = dt.date(2026, 2, 26)


def main(users: int, exploration: float, every: int, runs: int, seed: int, dump: str | None) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench_policy_"))
    config = load_config("conf/local.yaml", [
        "spark.master=local[2]", "spark.settings.spark.driver.memory=6g", "spark.settings.spark.ui.enabled=false",
        "spark.settings.spark.ui.showConsoleProgress=false", "spark.settings.spark.sql.shuffle.partitions=4",
        f"lakehouse={root / 'lakehouse'}", f"landing={root / 'landing'}", f"mlflow.tracking_uri={root / 'mlruns'}",
        f"generate.users={users}", "generate.days=180", f"generate.seed={seed}", "generate.dirty_fraction=0",
        "train.epochs=3", "train.launcher=single", f"policy.exploration={exploration}"])
    spark = get_spark(config.spark)
    began = time.perf_counter()
    dates = [FIRST + dt.timedelta(days=every * k) for k in range(runs)]
    demo = config.landing_location("demo")
    generate_landing(spark, config.generate, demo)
    ingest(spark, config, f"{demo}/events", f"{demo}/users", config.generate.format)
    run_rollup(spark, config)
    run_labels(spark, config, dates)  # every run's label window closes inside the 180 days
    run_training(spark, config)
    for day in dates:
        run_features(spark, config, [day])
        run_scoring(spark, config, day)
        print(" | ".join(run_alerts(spark, config, day).lines()[:2]))
        print(f"{day}: {respond(spark, config, [day])} users won back")
    run = policy_step(spark, config)
    print("\n".join(run.lines()))
    found = {(e.policy, e.estimator): e.value for e in run.estimates if e.action == "all"}
    print(f"\n{users:,} users (seed {seed}), exploration {exploration}, {runs} runs every {every} days, "
          f"{run.rows:,} matured assignments, {time.perf_counter() - began:.0f} s")
    print("| policy | true | IPS | SNIPS | DR |\n|---|---|---|---|---|")
    for policy in ("learnt", "rules", "all_high_risk", "none"):
        print(f"| {policy} | " + " | ".join(f"{found[policy, e]:.3f}" for e in (TRUTH, "ips", "snips", "dr")) + " |")
    print("| learnt - rules | " + " | ".join(f"{found['learnt', e] - found['rules', e]:.3f}"
                                          for e in (TRUTH, "ips", "snips", "dr")) + " |")
    if dump:
        _dump(spark, config, dump)
    spark.stop()


def _dump(spark: SparkSession, config: Config, where: str) -> None:
    rows, x = logged_rows(spark, config)
    names = list(config.policy.actions)
    keys = spark.createDataFrame(rows[["user_id", "snapshot_date"]], "user_id string, snapshot_date date")
    state = simulate.state(spark, generate_spec(config.generate), sorted(set(rows["snapshot_date"])),
                           config.labels.horizon_days)
    known = (simulate.potential_outcomes(state, names).join(keys, ["user_id", "snapshot_date"])
             .select("user_id", "snapshot_date", "lapse", "bad_experience", "abandoned_carts",
                     *[F.col("retained")[a].alias(f"kept_{a}") for a in names]).toPandas())
    logged = rows[["user_id", "snapshot_date", "suggested_action", "propensity", "retained", "reward", "worth",
                   "risk_tier", "rule_action"]]
    frame = pd.concat([logged.reset_index(drop=True), x.add_prefix("x_").reset_index(drop=True)], axis=1)
    frame.merge(known, on=["user_id", "snapshot_date"], how="left").to_parquet(where)
    print(f"wrote {len(frame)} logged rows to {where}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8000)
    parser.add_argument("--exploration", type=float, default=0.3)
    parser.add_argument("--every", type=int, default=14)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42, help="the generated world's seed (conf/local.yaml's)")
    parser.add_argument("--dump", help="write the matured log, inputs and potential outcomes to this Parquet file")
    args = parser.parse_args()
    main(args.users, args.exploration, args.every, args.runs, args.seed, args.dump)
