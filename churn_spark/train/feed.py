"""The training feed: a Spark DataFrame cached once as Parquet, read back as torch batches per DDP rank.

Two feeds sit behind one interface, so that the job and the training loop never ask which runs:

``petastorm``
    Petastorm's converter (``feed_petastorm``), the default wherever petastorm imports. Petastorm
    0.13.1 runs on pyarrow 14 only.
``arrow``
    The same Parquet cache read with ``pyarrow.dataset`` (``feed_arrow``): any pyarrow from 14 on,
    every rank the same number of steps.

``auto`` (the default of ``train.feed``) picks petastorm when it imports and the cache is on local
disk or HDFS (petastorm 0.13.1 on pyarrow 14 cannot read one on an object store), else arrow. This module
imports neither petastorm nor the arrow feed until one is asked for, so that it imports where
petastorm is not installed.

A cache (what ``make_converter`` returns) is picklable: the launchers send it to every rank,
which opens its shard with ``open_batches`` and gets dicts of column name -> tensor.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from churn_spark import storage
from churn_spark.errors import ConfigError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

FEEDS = ("auto", "petastorm", "arrow")


class Cache(Protocol):
    """A materialised frame that every training process can read (the two feeds' common face)."""

    def open_batches(self, batch_size: int, rank: int, world_size: int, workers: int,
                     shuffle_seed: int | None) -> AbstractContextManager[Iterator[dict[str, Any]]]: ...

    def delete(self) -> None: ...


@functools.cache
def petastorm_problem() -> str | None:
    """Why the petastorm feed cannot run here (None: it can). Imports it, thread-pool fix included."""
    try:
        import churn_spark.train.feed_petastorm  # noqa: F401
    except Exception as err:  # any failure to import means "not usable", e.g. pyarrow >= 15
        return f"{type(err).__name__}: {err}".splitlines()[0]
    return None


def resolve_feed(feed: str, cache_dir: str | None = None) -> str:
    """The feed that ``feed`` (``auto``, ``petastorm`` or ``arrow``) means on this installation,
    for a cache under ``cache_dir`` (None: wherever it is).

    Raises
    ------
    ConfigError
        For an unknown name, or ``petastorm`` where petastorm cannot be imported or cannot read
        the cache's filesystem.
    """
    if feed not in FEEDS:
        raise ConfigError(f"train.feed: {feed!r} is not one of {', '.join(FEEDS)}")
    if feed == "arrow":
        return feed
    problem = petastorm_problem()
    if problem is None and cache_dir is not None and not _petastorm_reads(cache_dir):
        # Its reader calls ParquetDataset(validate_schema=...), which pyarrow 14 takes for local
        # and HDFS paths only.
        problem = f"petastorm {_PETASTORM_LINE} reads a cache on local disk or HDFS only, not {cache_dir}"
    if problem is None:
        return "petastorm"
    if feed == "petastorm":
        raise ConfigError(f"train.feed: petastorm cannot be used here ({problem}); "
                          f"set train.feed to arrow (or auto)")
    return "arrow"


_PETASTORM_LINE = "0.13.1"


def _petastorm_reads(cache_dir: str) -> bool:
    return storage.local_path(cache_dir) is not None or cache_dir.startswith(("hdfs:", "viewfs:"))


def make_converter(frame: DataFrame, cache_dir: str, feed: str = "auto",
                   storage_options: dict[str, Any] | None = None) -> Cache:
    """Materialise ``frame`` once as Parquet in a new folder under ``cache_dir``.

    Parameters
    ----------
    frame
        Numeric columns only; doubles are stored (and fed) as float32.
    cache_dir
        A URI every training process can read: ``file:/...``, ``file:///...``, ``s3a://...``,
        ``hdfs://...``, ``abfss://...``, ``dbfs:/...``, or a local path.
    feed
        ``auto``, ``petastorm`` or ``arrow`` (see the module docstring).
    storage_options
        fsspec options for ``cache_dir`` (endpoint, credentials), for the processes that read it.

    Raises
    ------
    ConfigError
        As ``resolve_feed``.
    """
    if resolve_feed(feed, cache_dir) == "petastorm":
        from churn_spark.train.feed_petastorm import PetastormCache

        return PetastormCache.write(frame, cache_dir, storage_options)
    from churn_spark.train.feed_arrow import ArrowCache

    return ArrowCache.write(frame, cache_dir, storage_options)


def open_batches(converter: Cache, batch_size: int, rank: int = 0, world_size: int = 1, workers: int = 1,
                 shuffle_seed: int | None = None) -> AbstractContextManager[Iterator[dict[str, Any]]]:
    """One pass over this rank's shard of ``converter`` as batches (dicts of column -> tensor).

    ``shuffle_seed`` shuffles the order of row groups reproducibly (None: file order), so that a
    resumed training repeats exactly the batches an uninterrupted one would have seen (with
    petastorm: with one reader thread, ``workers=1``). How shards are cut, and whether every rank
    gets the same number of batches, is each feed's own (see ``ArrowCache.open_batches``).
    """
    return converter.open_batches(batch_size, rank, world_size, workers, shuffle_seed)
