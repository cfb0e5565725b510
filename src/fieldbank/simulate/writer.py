"""Streaming, atomic Parquet output: one directory per table, part-00000.parquet, part-00001, ...

Batches are converted from numpy arrays to the contract's exact Arrow types here, then
written by a background thread (pyarrow releases the GIL, so writing overlaps with the
next month's numpy work on a second core). The queue is bounded: memory stays bounded.
"""

from __future__ import annotations

import queue
import shutil
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank import contract

QUEUE_BATCHES = 3  # batches waiting to be written; bounds memory
ROW_GROUP_ROWS = 1_000_000


def ids(prefix: str, start: int, n: int) -> pa.Array:
    """'prefix' + decimal counter, e.g. T0, T1, ...: unique and cheap to make."""
    numbers = pc.cast(pa.array(np.arange(start, start + n, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, numbers, "")


def timestamps(us: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    us = np.ascontiguousarray(us, dtype=np.int64)
    mask = None if valid is None else ~valid
    return pa.array(us, type=contract.TIMESTAMP, mask=mask)


def enum_strings(values: tuple[str, ...], index: np.ndarray) -> pa.Array:
    """String column from indices into `values`; index -1 means null."""
    index = np.asarray(index)
    valid = index >= 0
    idx = pa.array(np.where(valid, index, 0).astype(np.int32), mask=None if valid.all() else ~valid)
    return pc.take(pa.array(values, type=pa.string()), idx)


def take_ids(party_ids: pa.Array, index: np.ndarray) -> pa.Array:
    assert index.size == 0 or index.min() >= 0
    return pc.take(party_ids, pa.array(np.asarray(index, dtype=np.int64)))


class TableSink:
    """Writes one table as numbered part files of at most rows_per_file rows."""

    def __init__(self, directory: Path, table: str, rows_per_file: int) -> None:
        self.dir = directory / table
        self.dir.mkdir(parents=True, exist_ok=True)
        self.schema = contract.TABLES[table].schema
        self.rows_per_file = rows_per_file
        self.file_index = 0
        self.rows_in_file = 0
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        assert batch.schema.equals(self.schema), f"{self.dir.name}: batch schema differs from the contract"
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None or self.rows_in_file >= self.rows_per_file:
                self._open_next()
            take = min(batch.num_rows - offset, self.rows_per_file - self.rows_in_file)
            assert self._writer is not None
            self._writer.write_batch(batch.slice(offset, take), row_group_size=ROW_GROUP_ROWS)
            self.rows_in_file += take
            self.rows += take
            offset += take

    def _open_next(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self.file_index += 1
        path = self.dir / f"part-{self.file_index:05d}.parquet"
        self._writer = pq.ParquetWriter(path, self.schema, compression="snappy")
        self.rows_in_file = 0

    def close(self) -> None:
        if self._writer is None:  # an empty table still gets one (empty) file
            self._open_next()
        assert self._writer is not None
        self._writer.close()
        self._writer = None


class BackgroundWriter:
    """Runs sink.write(batch) calls in order on one thread, behind a bounded queue."""

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="parquet-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain after a failure
            sink, batch = item
            try:
                sink.write(batch)
            except BaseException as exc:  # re-raised on the main thread
                self._error = exc

    def submit(self, sink: TableSink, columns: dict[str, pa.Array]) -> None:
        if self._error is not None:
            raise self._error
        batch = pa.RecordBatch.from_arrays([columns[name] for name in sink.schema.names], schema=sink.schema)
        self._queue.put((sink, batch))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def staging_dir(final: Path) -> Path:
    return final.with_name(final.name + ".simulate-tmp")


def prepare_staging(final: Path) -> Path:
    tmp = staging_dir(final)
    if tmp.exists():  # left over by a crashed run
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def publish(tmp: Path, final: Path) -> None:
    """Replace `final` with `tmp` by renames, so readers never see a half-written output."""
    old = final.with_name(final.name + ".simulate-old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old)
