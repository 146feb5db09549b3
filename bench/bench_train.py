"""Training throughput: each feed against in-memory tensors, and 2 DDP processes against 1.

    .venv/bin/python bench/bench_train.py [--rows 200000] [--epochs 3] [--repeats 3] [--batch 256]
        [--row-group-mb 8] [--no-ddp]

Data: a training-set-shaped table made by Spark (74 standardised numeric columns, 6
category indices, a label that depends on them), cached once by each feed that runs here
(petastorm where it imports; the arrow feed always, row groups of ``--row-group-mb``).
1. Feed: one process trains the MLP for ``--epochs`` passes reading batches through
   ``open_batches`` (one reader thread, as training does), feed after feed, then the same loop
   over the same rows already held as torch tensors (the limit). Prints seconds per epoch and
   the ratio feed / memory (goals: petastorm <= 1.25, arrow <= 1.1).
2. DDP (unless ``--no-ddp``): the real ``train_fn`` under torchrun, reading the ``auto`` feed,
   with 1 process and with 2 processes (gloo, CPU,
   OMP_NUM_THREADS=1 each, as TorchDistributor sets), the same data and epochs; throughput =
   training rows / mean training-pass seconds (start-up excluded). Prints the ratio 2 / 1
   (goal >= 1.6 on 2 cores), and, for reference, 1 process allowed 2 threads.
Medians over ``--repeats``.
"""

from __future__ import annotations

import argparse
import functools
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from pyspark.sql import functions as F

from churn_spark.config import load_config
from churn_spark.spark import get_spark
from churn_spark.train.feed import make_converter, open_batches, petastorm_problem
from churn_spark.train.feed_arrow import ArrowCache
from churn_spark.train.loop import Inputs
from churn_spark.train.model import build_model

NUMERIC, CATEGORICAL = [f"n{i}" for i in range(74)], [f"c{i}" for i in range(6)]
BATCH = 256  # per process; --batch changes it


def _table(spark, rows: int):
    columns = [F.randn(i).cast("float").alias(c) for i, c in enumerate(NUMERIC)]
    columns += [(F.rand(100 + i) * 5).cast("int").alias(c) for i, c in enumerate(CATEGORICAL)]
    frame = spark.range(rows).select(*columns)
    logit = F.col("n0") - F.col("n1") + 0.5 * F.col("c0") - 1
    return frame.withColumn("label", (F.rand(999) < 1 / (1 + F.exp(-logit))).cast("float"))


def _epoch_batches(feed, epoch: int):
    return open_batches(feed, BATCH, shuffle_seed=epoch)


def _epochs(batches_of_epoch, epochs: int) -> float:
    """Mean seconds of a training pass of the MLP over the batches."""
    inputs = Inputs(NUMERIC, CATEGORICAL)
    model = build_model("mlp", len(NUMERIC), [6] * len(CATEGORICAL), torch.device("cpu"))
    optimizer, loss = torch.optim.Adam(model.parameters(), lr=0.003), torch.nn.BCEWithLogitsLoss()
    seconds = []
    for epoch in range(epochs):
        began = time.perf_counter()
        with batches_of_epoch(epoch) as batches:
            for batch in batches:
                (numeric, categories), labels = inputs.split(batch, torch.device("cpu"))
                optimizer.zero_grad()
                loss(model(numeric, categories), labels).backward()
                optimizer.step()
        seconds.append(time.perf_counter() - began)
    return statistics.mean(seconds)


class _InMemory:
    """The same rows as torch tensors, batched by slicing (the limit of any feed)."""

    def __init__(self, converter) -> None:
        with open_batches(converter, batch_size=1 << 20) as loader:
            parts = list(loader)
        self.columns = {c: torch.cat([p[c] for p in parts]) for c in parts[0]}
        self.rows = len(self.columns["label"])

    def __call__(self, epoch: int):
        # Shuffled once per epoch (one gather), then contiguous slices: the cheapest batching.
        order = torch.randperm(self.rows, generator=torch.Generator().manual_seed(epoch))
        shuffled = {c: v[order] for c, v in self.columns.items()}
        batches = ({c: v[i:i + BATCH] for c, v in shuffled.items()} for i in range(0, self.rows, BATCH))
        return _Nullcontext(batches)


class _Nullcontext:
    def __init__(self, value) -> None:
        self.value = value

    def __enter__(self):
        return self.value

    def __exit__(self, *exc) -> None:
        return None


def _ddp(params: dict, processes: int, threads: int, folder: Path) -> float:
    """Training rows per second of train_fn under torchrun (mean training pass, start-up excluded)."""
    (folder / "params.pkl").write_bytes(pickle.dumps(params))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                    "-m", "churn_spark.train.distributed", str(folder / "params.pkl"), str(folder / "result.pkl")],
                   check=True, env=env, capture_output=True)
    summary = pickle.loads((folder / "result.pkl").read_bytes())
    return summary["epoch_seconds"]


def _feeds(spark, rows: int, folder: Path, row_group_mb: float) -> dict:
    """The training table cached by every feed that runs here (the same rows: one cached frame)."""
    table = _table(spark, rows).repartition(8).cache()
    table.count()
    feeds = {"arrow": ArrowCache.write(table, f"file://{folder}/cache", None, int(row_group_mb * 2**20))}
    if petastorm_problem() is None:
        feeds["petastorm"] = make_converter(table, f"file://{folder}/cache", feed="petastorm")
    table.unpersist()
    return feeds


def main(rows: int, epochs: int, repeats: int, row_group_mb: float, ddp_too: bool) -> None:
    spark = get_spark(load_config(None, ["spark.master=local[2]",
                                         "spark.settings.spark.ui.showConsoleProgress=false"]).spark)
    folder = Path(tempfile.mkdtemp())
    feeds = _feeds(spark, rows, folder, row_group_mb)
    memory = _InMemory(feeds["arrow"])
    seconds: dict[str, list[float]] = {name: [] for name in [*feeds, "memory"]}
    for _ in range(repeats):  # interleaved, so that the machine's load changes touch every feed alike
        for name, feed in feeds.items():
            seconds[name].append(_epochs(functools.partial(_epoch_batches, feed), epochs))
        seconds["memory"].append(_epochs(memory, epochs))
        print("repeat:", ", ".join(f"{name} {s[-1]:.2f} s/epoch" for name, s in seconds.items()), flush=True)
    ddp = {}
    if ddp_too:
        valid = make_converter(_table(spark, rows // 10).repartition(2), f"file://{folder}/cache")
        train = feeds["petastorm" if "petastorm" in feeds else "arrow"]
        params = dict(model="mlp", numeric=NUMERIC, categorical=CATEGORICAL, cardinalities=[6] * 6, seed=0,
                      learning_rate=0.003, batch_size=BATCH, pos_weight=1.0, epochs=epochs, patience=epochs,
                      train=train, valid=valid, use_gpu=False, checkpoint=str(folder / "ckpt.pt"))
        ddp = {label: [statistics.mean(_ddp(params, p, t, folder)) for _ in range(repeats)]
               for label, p, t in (("1 process, 1 thread", 1, 1), ("2 processes, 1 thread each", 2, 1),
                                   ("1 process, 2 threads", 1, 2))}
        valid.delete()
    for feed in feeds.values():
        feed.delete()
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    print(f"\n{rows:,} rows x {len(NUMERIC) + len(CATEGORICAL)} features, MLP, batch {BATCH}, "
          f"{epochs} epochs, medians of {repeats}, arrow row groups of {row_group_mb:g} MiB "
          f"({len(feeds['arrow'].rows)} row groups)")
    print(f"in-memory tensors {medians['memory']:.2f} s/epoch (all: {_listed(seconds['memory'])})")
    for name in feeds:
        print(f"feed {name}: {medians[name]:.2f} s/epoch, ratio {medians[name] / medians['memory']:.2f} "
              f"(all: {_listed(seconds[name])})")
    if not ddp:
        spark.stop()
        return
    rates = {label: rows / statistics.median(s) for label, s in ddp.items()}
    for label, rate in rates.items():
        print(f"DDP {label}: {rate:,.0f} rows/s")
    one, two = rates["1 process, 1 thread"], rates["2 processes, 1 thread each"]
    print(f"DDP 2 processes / 1 process: {two / one:.2f} "
          f"(vs 1 process with 2 threads: {two / rates['1 process, 2 threads']:.2f})")
    spark.stop()


def _listed(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size per process")
    parser.add_argument("--row-group-mb", type=float, default=8.0, help="the arrow feed's Parquet row groups")
    parser.add_argument("--no-ddp", action="store_true", help="measure the feeds only")
    args = parser.parse_args()
    BATCH = args.batch
    main(args.rows, args.epochs, args.repeats, args.row_group_mb, not args.no_ddp)
