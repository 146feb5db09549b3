"""The training feeds: petastorm (every loader yields all its rows, shards partition rows) and the
arrow feed (exact rows, equal steps per rank, seeded order, a DDP run on uneven shards), and which
feed ``train.feed`` selects."""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import fsspec.implementations.memory
import pyarrow.fs as pafs
import pytest
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from churn_spark.config import load_config
from churn_spark.errors import ConfigError
from churn_spark.train.feed import make_converter, open_batches, petastorm_problem, resolve_feed
from churn_spark.train.feed_arrow import ArrowCache, _filesystem, shard
from tests.conftest import ROOT

ROWS = 2_000
needs_petastorm = pytest.mark.skipif(petastorm_problem() is not None, reason=f"petastorm: {petastorm_problem()}")


def _rows(loader) -> list[int]:
    return sorted(int(v) for batch in loader for v in batch["row"])


# -- petastorm ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def converter(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    frame = spark.range(ROWS).select(F.col("id").cast("float").alias("row"), (F.col("id") % 7).cast("float").alias("x"))
    cache = tmp_path_factory.mktemp("petastorm")
    # Two row groups: the ventilator is done almost at once, which is where the race lives
    # (unpatched, 17 loaders in 100 ended short here; 26 in 100 with one row group).
    converted = make_converter(frame.repartition(2), f"file://{cache}", feed="petastorm")
    yield converted
    converted.delete()


@needs_petastorm
def test_many_loaders_each_yield_every_row(converter) -> None:
    for attempt in range(40):
        with open_batches(converter, batch_size=128, workers=4, shuffle_seed=attempt) as loader:
            assert _rows(loader) == list(range(ROWS)), f"loader {attempt} lost rows"


@needs_petastorm
def test_shards_partition_the_rows(converter) -> None:
    shards = []
    for rank in range(2):
        with open_batches(converter, batch_size=128, rank=rank, world_size=2) as loader:
            shards.append(_rows(loader))
    assert shards[0] and shards[1]
    assert sorted(shards[0] + shards[1]) == list(range(ROWS))


# -- arrow: how ranks share the rows (no Spark) ------------------------------------------------

def test_shard_cuts_the_epoch_order_into_equal_ranges_wrapping_round() -> None:
    counts, order = [5, 3, 2], [2, 0, 1]  # laid end to end: group 2 (rows 0-1), 0 (2-6), 1 (7-9)
    ranks = [shard(counts, order, rank, 3, pad=True) for rank in range(3)]
    # 10 rows over 3 ranks: 4 each, the last two wrapped round to the first rows (group 2's).
    assert ranks == [[(2, 0, 2), (0, 0, 2)], [(0, 2, 5), (1, 0, 1)], [(1, 1, 3), (2, 0, 2)]]


def test_shard_without_padding_splits_the_rows_exactly() -> None:
    ranks = [shard([5, 3, 2], [0, 1, 2], rank, 3, pad=False) for rank in range(3)]
    assert ranks == [[(0, 0, 3)], [(0, 3, 5), (1, 0, 1)], [(1, 1, 3), (2, 0, 2)]]
    assert shard([0], [0], 0, 2, pad=True) == []


def test_a_local_cache_is_read_natively_and_any_other_through_fsspec() -> None:
    for spelling in ("file:/tmp/cache/x", "file:///tmp/cache/x", "/tmp/cache/x"):  # Spark writes the first
        filesystem, path = _filesystem(spelling, None)
        assert (type(filesystem), path) == (pafs.LocalFileSystem, "/tmp/cache/x")
    filesystem, path = _filesystem("memory://cache/x", None)
    assert (type(filesystem), type(filesystem.handler.fs), path) == (
        pafs.PyFileSystem, fsspec.implementations.memory.MemoryFileSystem, "/cache/x")


def test_fsspec_reads_spark_s3a_as_s3() -> None:
    s3fs = pytest.importorskip("s3fs")
    filesystem, path = fsspec.core.url_to_fs("s3a://bucket/churn/x", anon=True)
    assert (type(filesystem), path) == (s3fs.S3FileSystem, "bucket/churn/x")


# -- arrow: a cache written by Spark -----------------------------------------------------------

def _frame(spark: SparkSession, sizes: list[int]) -> DataFrame:
    """One partition (so one file, one row group) per size, in id order: row (id), x (a double), c (an int)."""
    keys: dict[int, int] = {}  # partition -> a key that Spark's hash partitioning sends there
    for found in spark.range(100).select("id", F.pmod(F.hash(F.col("id").cast("int")), F.lit(len(sizes)))).collect():
        keys.setdefault(found[1], found[0])
    bucket, end = F.lit(keys[len(sizes) - 1]), sum(sizes)
    for part in reversed(range(len(sizes) - 1)):
        end -= sizes[part + 1]
        bucket = F.when(F.col("id") < end, keys[part]).otherwise(bucket)
    frame = spark.range(sum(sizes)).withColumn("key", bucket.cast("int")).repartition(len(sizes), "key")
    return frame.sortWithinPartitions("id").select(F.col("id").alias("row"), (F.col("id") / 4).alias("x"),
                                                   (F.col("id") % 3).cast("int").alias("c"))


@pytest.fixture(scope="module")
def uneven(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    """Three row groups of 1500, 400 and 101 rows, written to a Spark-style ``file:/`` URI."""
    cache = make_converter(_frame(spark, [1500, 400, 101]), f"file:{tmp_path_factory.mktemp('arrow')}", feed="arrow")
    assert isinstance(cache, ArrowCache) and cache.rows == [1500, 400, 101]
    yield cache
    cache.delete()


@pytest.fixture(scope="module")
def eight(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory):
    cache = make_converter(_frame(spark, [250] * 8), f"file://{tmp_path_factory.mktemp('arrow8')}", feed="arrow")
    assert len(cache.rows) == 8
    yield cache
    cache.delete()


def _read(cache, rank: int = 0, world_size: int = 1, seed: int | None = None, batch: int = 128):
    with open_batches(cache, batch_size=batch, rank=rank, world_size=world_size, shuffle_seed=seed) as batches:
        return list(batches)


def test_arrow_feed_yields_exactly_the_rows_of_the_frame(uneven) -> None:
    batches = _read(uneven)
    assert [len(b["row"]) for b in batches] == [128] * 15 + [81]  # 2001 rows, batches cut across row groups
    columns = {c: torch.cat([b[c] for b in batches]) for c in ("row", "x", "c")}
    assert columns["row"].tolist() == list(range(2001))  # file order without a seed
    assert (columns["x"].dtype, columns["c"].dtype) == (torch.float32, torch.int32)  # doubles stored as float32
    assert columns["x"].tolist() == [i / 4 for i in range(2001)]
    assert columns["c"].tolist() == [i % 3 for i in range(2001)]


@pytest.mark.parametrize("world_size", [2, 4])
def test_each_row_once_per_epoch_across_ranks_plus_the_wrapped_padding(uneven, world_size: int) -> None:
    ranks = [_read(uneven, rank, world_size, seed=11) for rank in range(world_size)]
    per_rank = [sum(len(b["row"]) for b in batches) for batches in ranks]
    assert per_rank == [-(-2001 // world_size)] * world_size
    seen = collections.Counter(int(v) for batches in ranks for b in batches for v in b["row"])
    padding = world_size * per_rank[0] - 2001  # 1 row over 2 ranks, 3 over 4
    first_rows = [int(v) for v in torch.cat([b["row"] for b in ranks[0]])[:padding]]
    assert set(seen) == set(range(2001))
    assert sorted(r for r, n in seen.items() if n == 2) == sorted(first_rows)  # the epoch's first rows, again
    assert sum(seen.values()) == 2001 + padding


def test_uneven_row_groups_give_every_rank_the_same_steps(uneven) -> None:
    # 1500, 400 and 101 rows over 2 ranks: by row group 1500 vs 501 (12 vs 5 steps); split exactly
    # 1000 vs 1001 (8 vs 9); padded, 1001 each.
    for seed in range(6):  # every order of the three row groups
        steps = [len(_read(uneven, rank, 2, seed=seed, batch=125)) for rank in range(2)]
        assert steps == [9, 9], seed


def test_validation_order_splits_the_rows_exactly(uneven) -> None:
    shards = [[int(v) for b in _read(uneven, rank, 2) for v in b["row"]] for rank in range(2)]
    assert shards == [list(range(1000)), list(range(1000, 2001))]


def test_same_seed_same_batches_another_seed_another_order(eight) -> None:
    first, again, other = _read(eight, 1, 2, seed=5), _read(eight, 1, 2, seed=5), _read(eight, 1, 2, seed=6)
    rows = [torch.cat([b["row"] for b in run]).tolist() for run in (first, again, other)]
    assert rows[0] == rows[1] and rows[0] != rows[2]
    assert rows[0] != sorted(rows[0])  # shuffled row groups, not file order
    assert all(torch.equal(a[c], b[c]) for a, b in zip(first, again) for c in a)


def test_leaving_early_stops_the_reader(eight) -> None:
    with open_batches(eight, batch_size=10, workers=2, shuffle_seed=1) as batches:
        assert len(next(iter(batches))["row"]) == 10
    assert len(_read(eight, seed=1, batch=500)) == 4  # the cache still reads whole afterwards


def test_arrow_cache_is_deleted_after_training(spark: SparkSession, tmp_path: Path) -> None:
    cache = make_converter(_frame(spark, [10]), f"file://{tmp_path}", feed="arrow")
    folder = cache.uri[len("file://"):]
    assert any(name.endswith(".parquet") for name in os.listdir(folder))
    cache.delete()
    assert os.listdir(tmp_path) == []


def test_arrow_feed_refuses_a_text_column(spark: SparkSession, tmp_path: Path) -> None:
    frame = spark.range(3).select("id", F.lit("gold").alias("level"))
    refusal = "^frame: column level is string; the training feed takes numeric columns only$"
    with pytest.raises(ValueError, match=refusal):
        make_converter(frame, f"file://{tmp_path}", feed="arrow")


# -- arrow: DDP processes ----------------------------------------------------------------------

def _ddp_rank(rank: int, address: str, cache: ArrowCache, out: str) -> None:
    """One gloo rank: a DDP step (an all-reduce) per batch, without ``join``: uneven steps would hang."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=2)
    model = DistributedDataParallel(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    steps, rows = 0, []
    for epoch in range(2):
        with open_batches(cache, batch_size=50, rank=rank, world_size=2, shuffle_seed=epoch) as batches:
            for batch in batches:
                optimizer.zero_grad()
                model(batch["x"].unsqueeze(1)).sum().backward()
                optimizer.step()
                steps, rows = steps + 1, rows + batch["row"].tolist()
    dist.destroy_process_group()
    Path(f"{out}.{rank}").write_text(json.dumps({"steps": steps, "rows": rows}))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_on_uneven_shards_finish(uneven, tmp_path: Path) -> None:
    context = torch.multiprocessing.start_processes(
        _ddp_rank, args=(f"tcp://127.0.0.1:{_free_port()}", uneven, str(tmp_path / "rank")), nprocs=2,
        join=False, start_method="spawn")
    deadline = time.monotonic() + 480  # a loaded 2-core machine takes minutes to start two ranks
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the DDP ranks did not finish in 480 s (uneven steps hang an all-reduce)")
    ranks = [json.loads((tmp_path / f"rank.{r}").read_text()) for r in range(2)]
    # 1001 rows per rank and epoch in batches of 50 (unpadded, 1000 vs 1001 rows would be 20 vs 21 steps).
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2 * 21
    seen = collections.Counter(ranks[0]["rows"] + ranks[1]["rows"])
    assert set(seen) == set(range(2001)) and sum(seen.values()) == 2 * 2002


@pytest.mark.slow
def test_train_fn_under_torchrun_trains_through_the_arrow_feed(spark: SparkSession, tmp_path: Path) -> None:
    from churn_spark.train.distributed import launch
    from tests.test_train import _labelled

    caches = [make_converter(_labelled(spark, seed, rows).repartition(parts), f"file://{tmp_path}/cache", feed="arrow")
              for seed, rows, parts in ((1, 6000, 3), (9, 2000, 2))]
    params = dict(model="mlp", numeric=["x1", "x2"], categorical=["c"], cardinalities=[4], seed=3, learning_rate=0.05,
                  batch_size=128, pos_weight=1.0, epochs=2, patience=10, train=caches[0], valid=caches[1],
                  checkpoint=str(tmp_path / "ckpt.pt"), use_gpu=False)
    try:
        summary = launch(params, "torchrun", num_processes=2)
    finally:
        for cache in caches:
            cache.delete()
    assert (summary["world_size"], summary["epochs_run"]) == (2, 2)
    assert summary["best_auc"] > 0.85  # the true model's AUC on this task is about 0.91


# -- which feed runs -----------------------------------------------------------------------------

def test_an_unknown_feed_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^train.feed: 'parquet' is not one of auto, petastorm, arrow$"):
        resolve_feed("parquet")
    with pytest.raises(ConfigError, match=r"train\.feed: Input should be 'auto', 'petastorm' or 'arrow'"):
        load_config(None, ["train.feed=parquet"])


@needs_petastorm
def test_auto_picks_petastorm_where_it_imports() -> None:
    assert [resolve_feed(f) for f in ("auto", "petastorm", "arrow")] == ["petastorm", "petastorm", "arrow"]
    assert load_config(None, ["train.feed=petastorm"]).train.feed == "petastorm"


@needs_petastorm
def test_a_cache_on_an_object_store_is_read_by_the_arrow_feed() -> None:
    assert [resolve_feed("auto", c) for c in ("file:/tmp/c", "/tmp/c", "hdfs://nn/c", "s3a://b/c")] == [
        "petastorm", "petastorm", "petastorm", "arrow"]
    with pytest.raises(ConfigError, match=r"^train.feed: petastorm cannot be used here \(petastorm 0.13.1 reads a "
                                          r"cache on local disk or HDFS only, not s3a://b/c\); set train.feed to"):
        resolve_feed("petastorm", "s3a://b/c")


WITHOUT_PETASTORM = """
import sys
sys.modules["petastorm"] = None  # as on a line where petastorm is not installed: importing it fails
from churn_spark.config import load_config
from churn_spark.errors import ConfigError
from churn_spark.train.feed import resolve_feed
import churn_spark.train.feed_arrow
print(resolve_feed("auto"), resolve_feed("arrow"), "petastorm.pytorch" in sys.modules)
for attempt in (lambda: resolve_feed("petastorm"), lambda: load_config(None, ["train.feed=petastorm"])):
    try:
        attempt()
    except ConfigError as err:
        print(err)
"""


def test_without_petastorm_auto_is_arrow_and_petastorm_is_refused() -> None:
    run = subprocess.run([sys.executable, "-c", WITHOUT_PETASTORM], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    problem = "ModuleNotFoundError: import of petastorm halted; None in sys.modules"
    assert run.stdout.splitlines() == [
        "arrow arrow False",
        f"train.feed: petastorm cannot be used here ({problem}); set train.feed to arrow (or auto)",
        f"conf/local.yaml: train.feed: Value error, petastorm cannot be imported here ({problem}); "
        f"set train.feed to arrow or auto",
    ]


@pytest.mark.parametrize("feed", ["arrow", pytest.param("petastorm", marks=needs_petastorm)])
def test_a_sequence_column_arrives_as_one_float_row_per_row(spark: SparkSession, tmp_path: Path, feed: str) -> None:
    """The sequence model's input: an array of doubles per row becomes a (batch, length) float32
    tensor whose rows are the rows' arrays, beside the scalar columns."""
    frame = spark.range(10).select(F.col("id").cast("float").alias("row"),
                                   F.array(*[F.col("id") * 1.0 + k for k in range(6)]).alias("daily_sequence"))
    cache = make_converter(frame.repartition(2), f"file://{tmp_path}", feed=feed)
    try:
        with open_batches(cache, batch_size=4) as batches:
            read = list(batches)
    finally:
        cache.delete()
    assert {batch["daily_sequence"].dtype for batch in read} == {torch.float32}
    seen = [(int(row), values.tolist()) for batch in read
            for row, values in zip(batch["row"], batch["daily_sequence"], strict=True)]
    assert sorted(seen) == [(i, [float(i + k) for k in range(6)]) for i in range(10)]
