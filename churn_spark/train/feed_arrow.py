"""The arrow feed: the Parquet cache read with ``pyarrow.dataset``, any pyarrow from 14 on.

Spark writes the frame once under the cache URI (row groups of about ``ROW_GROUP_BYTES``); the
driver then indexes its row groups (file, number, rows) from the Parquet footers, and that index
travels, pickled, to every rank. A rank reads a local cache with pyarrow's own local filesystem
and any other through ``churn_spark.storage`` (fsspec, with the storage options, wrapped in
``pyarrow.fs.PyFileSystem``), so that ``file:``, ``s3a://``, ``hdfs://``, ``abfss://`` and the
rest are read as Spark wrote them.

Shards: each epoch lays the row groups end to end, in an order shuffled by the seed (file order
without one), and cuts that sequence of rows into ``world_size`` contiguous ranges; rank ``r``
reads the row groups its range covers (a row group on a boundary is read by both ranks, each
keeping its part). For training (a seed) every range holds ``ceil(rows / world_size)`` rows, the
last ranges wrapping round to the first rows of the epoch's order, as ``DistributedSampler``
pads: every rank runs the same number of steps, and at most ``world_size - 1`` rows are seen
twice per epoch. For validation (no seed) the ranges split the rows exactly, no row repeated
(rank counts differ by one row at most; nothing there waits on a collective per batch).
"""

from __future__ import annotations

import bisect
import queue
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import torch
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from churn_spark import storage

ROW_GROUP_BYTES = 8 * 1024 * 1024  # Parquet's row-group target: the unit of sharding and shuffling

Piece = tuple[int, int, int]  # (row group in the index, first row, row after the last)
Item = TypeVar("Item")


def _filesystem(uri: str, storage_options: dict[str, Any] | None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding ``uri`` and the path on it (a local one read natively: a
    Python filesystem handler in the read path costs as much as the training step)."""
    local = storage.local_path(uri)
    if local is not None:
        return pafs.LocalFileSystem(), local
    fs, path = storage.filesystem(uri, storage_options or {})
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def shard(counts: list[int], order: list[int], rank: int, world_size: int, pad: bool) -> list[Piece]:
    """The pieces of row groups that ``rank`` reads: its range of the rows laid end to end in ``order``.

    ``counts`` holds each row group's rows; ``pad`` gives every rank ``ceil(total / world_size)``
    rows, wrapping round to the start of ``order`` (see the module docstring).
    """
    total = sum(counts)
    if total == 0:
        return []
    if pad:
        per = -(-total // world_size)
        begin, end = rank * per, (rank + 1) * per
    else:
        begin, end = rank * total // world_size, (rank + 1) * total // world_size
    starts = np.cumsum([0] + [counts[g] for g in order[:-1]]).tolist()
    pieces, position = [], begin
    while position < end:
        at = position % total
        slot = bisect.bisect_right(starts, at) - 1
        group, first = order[slot], at - starts[slot]
        last = min(counts[group], first + end - position)
        pieces.append((group, first, last))
        position += last - first
    return pieces


def _prepared(frame: DataFrame) -> DataFrame:
    """``frame`` with doubles as float32 (as petastorm stores them), arrays of numbers as arrays of
    float32 (a sequence: one fixed-length array per row); any other column refused."""
    columns = []
    for field in frame.schema.fields:
        kind = field.dataType
        if isinstance(kind, T.DoubleType):
            columns.append(frame[field.name].cast("float").alias(field.name))
        elif isinstance(kind, T.ArrayType) and isinstance(kind.elementType, (T.FloatType, T.DoubleType)):
            columns.append(frame[field.name].cast("array<float>").alias(field.name))
        elif isinstance(kind, (T.FloatType, T.IntegralType, T.BooleanType)):
            columns.append(frame[field.name])
        else:
            raise ValueError(f"frame: column {field.name} is {kind.simpleString()}; the training feed "
                             f"takes numeric columns only")
    return frame.select(columns)


@dataclass
class ArrowCache:
    """A Parquet cache and its row-group index: what every rank needs to read its shard (picklable)."""

    uri: str  # as Spark wrote it
    storage_options: dict[str, Any] | None
    files: list[str]  # paths on the filesystem of ``uri`` (``_filesystem``)
    row_groups: list[tuple[int, int]]  # (file, row group in that file), row groups without rows left out
    rows: list[int]  # rows of each entry of row_groups

    @classmethod
    def write(cls, frame: DataFrame, cache_dir: str, storage_options: dict[str, Any] | None,
              row_group_bytes: int = ROW_GROUP_BYTES) -> ArrowCache:
        """Write ``frame`` (doubles as float32) to a new folder under ``cache_dir``; index its row groups."""
        uri = f"{cache_dir.rstrip('/')}/{uuid.uuid4().hex}"
        _prepared(frame).write.option("parquet.block.size", str(row_group_bytes)).parquet(uri)
        filesystem, path = _filesystem(uri, storage_options)
        dataset = ds.dataset(path, filesystem=filesystem, format="parquet")  # skips _SUCCESS and .crc
        files, row_groups, rows = [], [], []
        for fragment in sorted(dataset.get_fragments(), key=lambda f: f.path):
            files.append(fragment.path)
            for number in range(fragment.metadata.num_row_groups):
                count = fragment.metadata.row_group(number).num_rows
                if count:
                    row_groups.append((len(files) - 1, number))
                    rows.append(count)
        return cls(uri, storage_options, files, row_groups, rows)

    def order(self, shuffle_seed: int | None) -> list[int]:
        """The epoch's order of row groups: file order, or a permutation fixed by the seed."""
        if shuffle_seed is None:
            return list(range(len(self.rows)))
        return np.random.default_rng(shuffle_seed).permutation(len(self.rows)).tolist()

    @contextmanager
    def open_batches(self, batch_size: int, rank: int, world_size: int, workers: int,
                     shuffle_seed: int | None) -> Iterator[Iterator[dict[str, torch.Tensor]]]:
        """This rank's shard as batches of ``batch_size`` rows (the last one shorter), dicts of tensors.

        A background thread reads and decodes up to ``max(workers, 1)`` row groups ahead while the
        caller trains. With a seed every rank yields the same number of batches (see the module
        docstring).
        """
        pieces = shard(self.rows, self.order(shuffle_seed), rank, world_size, pad=shuffle_seed is not None)
        filesystem, _ = _filesystem(self.uri, self.storage_options)
        with _read_ahead(self._read(filesystem, pieces), max(workers, 1)) as tensors:
            yield _batches(tensors, batch_size)

    def _read(self, filesystem: pafs.FileSystem, pieces: list[Piece]) -> Iterator[dict[str, torch.Tensor]]:
        parquet = ds.ParquetFileFormat()
        for group, first, last in pieces:
            file, number = self.row_groups[group]
            fragment = parquet.make_fragment(self.files[file], filesystem=filesystem, row_groups=[number])
            yield _tensors(fragment.to_table(use_threads=False).slice(first, last - first))

    def delete(self) -> None:
        """Remove the cache folder (Spark's marker files included)."""
        filesystem, path = _filesystem(self.uri, self.storage_options)
        filesystem.delete_dir(path)


def _tensors(table: Any) -> dict[str, torch.Tensor]:
    out = {}
    for name, column in zip(table.column_names, table.columns):
        if column.null_count:
            raise ValueError(f"training cache: column {name} holds nulls; the feed takes complete rows only")
        if pa.types.is_list(column.type):  # a sequence: every row's array the same length
            flat = column.combine_chunks()
            values = flat.flatten().to_numpy(zero_copy_only=False).reshape(len(flat), -1)
            out[name] = torch.from_numpy(np.require(values, dtype=np.float32, requirements="W"))
            continue
        # Writable memory for torch (a single-chunk column converts without a copy, read-only).
        out[name] = torch.from_numpy(np.require(column.to_numpy(), requirements="W"))
    return out


def _batches(pieces: Iterable[dict[str, torch.Tensor]], batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Batches of ``batch_size`` rows cut across the pieces (views where a batch lies in one piece)."""
    carry: list[dict[str, torch.Tensor]] = []
    carried = 0
    for piece in pieces:
        rows = len(next(iter(piece.values())))
        start = 0
        if carried:
            start = min(batch_size - carried, rows)
            carry.append({c: v[:start] for c, v in piece.items()})
            carried += start
            if carried == batch_size:
                yield {c: torch.cat([part[c] for part in carry]) for c in piece}
                carry, carried = [], 0
        while rows - start >= batch_size:
            yield {c: v[start:start + batch_size] for c, v in piece.items()}
            start += batch_size
        if start < rows:
            carry.append({c: v[start:] for c, v in piece.items()})
            carried += rows - start
    if carried:
        yield {c: torch.cat([part[c] for part in carry]) for c in carry[0]}


@contextmanager
def _read_ahead(items: Iterator[Item], depth: int) -> Iterator[Iterator[Item]]:
    """``items`` produced by a background thread, up to ``depth`` ahead of the consumer, in order.

    Leaving the context early (the consumer stopped, or raised) stops the thread; an error in the
    thread is raised in the consumer.
    """
    ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as err:  # handed to the consumer, raised there
            put((False, err))

    def consume() -> Iterator[Item]:
        while True:
            more, item = ready.get()
            if not more:
                if item is not None:
                    raise item
                return
            yield item

    thread = threading.Thread(target=produce, name="arrow-feed-reader", daemon=True)
    thread.start()
    try:
        yield consume()
    finally:
        stop.set()
        thread.join()
