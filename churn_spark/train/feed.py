"""Petastorm: a Spark DataFrame as PyTorch batches, one shard per DDP rank.

Importing this module fixes a race in petastorm 0.13.1's thread pool (see
``_patch_thread_pool``); every process that reads through Petastorm (torchrun ranks,
TorchDistributor's workers) imports it before opening a loader.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import petastorm
from petastorm.pytorch import BatchedDataLoader
from petastorm.spark import SparkDatasetConverter, make_spark_converter
from petastorm.workers_pool import thread_pool
from pyspark.sql import DataFrame

_PATCHED_VERSION = "0.13.1"


def _patch_thread_pool() -> None:
    """Make ThreadPool read the ventilator's "completed" flag before the workers' counters.

    petastorm 0.13.1's ``ThreadPool.get_results`` ends the epoch when
    ``all_workers_done()`` (processed == ventilated, per worker) and then the ventilator
    reports ``completed()``. Read in that order, the ventilator can hand out its last row
    groups and flip to completed between the two reads: the counters said "all done" for
    the items ventilated *so far*, and the loader ends early, often with zero rows and no
    error (measured here: about one loader in ten). Reading ``completed()`` first makes the
    counters final when they are compared. Pinned to 0.13.1: a newer petastorm must be
    checked again before this is carried over.
    """
    if petastorm.__version__ != _PATCHED_VERSION:
        raise RuntimeError(f"churn_spark.train.feed patches petastorm {_PATCHED_VERSION}, "
                           f"found {petastorm.__version__}: re-check ThreadPool.get_results")
    pool = thread_pool.ThreadPool
    if getattr(pool.all_workers_done, "_churn_spark_fixed", False):
        return
    counters_done = pool.all_workers_done

    @functools.wraps(counters_done)
    def all_workers_done(self: Any) -> bool:
        ventilation_over = self._ventilator is None or self._ventilator.completed()  # read first
        return ventilation_over and counters_done(self)

    all_workers_done._churn_spark_fixed = True  # type: ignore[attr-defined]
    pool.all_workers_done = all_workers_done


_patch_thread_pool()


def make_converter(frame: DataFrame, cache_dir: str) -> SparkDatasetConverter:
    """Materialise ``frame`` once as Parquet under ``cache_dir`` for Petastorm readers.

    Parameters
    ----------
    frame
        Numeric columns only (Petastorm turns them into float32 tensors).
    cache_dir
        A ``file://`` or distributed-filesystem URL every training process can read.
    """
    spark = frame.sparkSession
    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_dir)
    return make_spark_converter(frame)


@contextmanager
def open_batches(
    converter: SparkDatasetConverter, batch_size: int, rank: int = 0, world_size: int = 1,
    workers: int = 1, shuffle_seed: int | None = None,
) -> Iterator[Any]:
    """One pass over this rank's shard (row groups ``rank::world_size``) as a torch DataLoader.

    ``shuffle_seed`` shuffles the order of row groups reproducibly (None: file order); with
    one worker the batches then come in the same order on every run, so that a resumed
    training repeats exactly the batches an uninterrupted one would have seen. Batches are
    built column-wise by petastorm's ``BatchedDataLoader`` (the default ``DataLoader``
    collates row by row, several times slower).
    """
    order = ({"shuffle_row_groups": False} if shuffle_seed is None
             else {"shuffle_row_groups": True, "seed": shuffle_seed + 1})  # petastorm reads seed 0 as "none"
    with converter.make_torch_dataloader(
        batch_size=batch_size, num_epochs=1, workers_count=workers, data_loader_fn=BatchedDataLoader,
        cur_shard=rank, shard_count=world_size, reader_pool_type="thread", **order,
    ) as loader:
        yield loader
