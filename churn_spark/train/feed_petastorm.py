"""The petastorm feed: petastorm's Spark converter behind the feed interface (``feed.Cache``).

Importing this module fixes a race in petastorm 0.13.1's thread pool (see
``_patch_thread_pool``). A ``PetastormCache`` unpickles by importing this module, so every
process that receives one (torchrun ranks, TorchDistributor's workers) has the fix before it
opens a loader.
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
    checked again before this is carried over (until then it does not import, and the
    ``auto`` feed falls back to arrow).
    """
    if petastorm.__version__ != _PATCHED_VERSION:
        raise ImportError(f"churn_spark.train.feed_petastorm patches petastorm {_PATCHED_VERSION}, "
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


class PetastormCache:
    """A petastorm ``SparkDatasetConverter`` and the fsspec options its readers need."""

    def __init__(self, converter: SparkDatasetConverter, storage_options: dict[str, Any] | None) -> None:
        self.converter, self.storage_options = converter, storage_options

    @classmethod
    def write(cls, frame: DataFrame, cache_dir: str, storage_options: dict[str, Any] | None) -> PetastormCache:
        """Materialise ``frame`` with petastorm (a new folder under ``cache_dir``, doubles as float32)."""
        frame.sparkSession.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_dir)
        return cls(make_spark_converter(frame), storage_options)

    @contextmanager
    def open_batches(self, batch_size: int, rank: int, world_size: int, workers: int,
                     shuffle_seed: int | None) -> Iterator[Any]:
        """This rank's shard, row groups ``rank::world_size``, as a torch DataLoader.

        Shards can differ in rows and batches (3 row groups over 2 ranks: 2 and 1); the training
        loop's DDP ``join`` covers that. Batches are built column-wise by petastorm's
        ``BatchedDataLoader`` (the default ``DataLoader`` collates row by row, several times slower).
        """
        order = ({"shuffle_row_groups": False} if shuffle_seed is None
                 else {"shuffle_row_groups": True, "seed": shuffle_seed + 1})  # petastorm reads seed 0 as "none"
        with self.converter.make_torch_dataloader(
            batch_size=batch_size, num_epochs=1, workers_count=workers, data_loader_fn=BatchedDataLoader,
            cur_shard=rank, shard_count=world_size, reader_pool_type="thread",
            storage_options=self.storage_options, **order,
        ) as loader:
            yield loader

    def delete(self) -> None:
        self.converter.delete()
