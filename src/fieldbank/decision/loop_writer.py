"""The decision log's group commit on the event loop, for the async HTTP route.

Why not the writer thread (writer.py): one `fieldbank serve` process decides on its event
loop, which holds the GIL for ~2-2.5 ms per decision. A writer thread needs the GIL back after
every wait (its queue, the database), and while the loop is busy it gets it only at the next
switch interval (5 ms); those waits were the write step's p99. Here rows queue on the loop and
writer tasks commit whatever has queued (up to max_batch rows) in one transaction; each
request's future is resolved when its row is committed, so a 201 still means "in the log".

A duplicate Idempotency-Key fails the whole batch; it is then written again row by row, so
only the duplicate's request gets the IntegrityError. A full queue or a commit not done in
timeout_s is DecisionLogBusy (HTTP 503). Subclasses say how one batch is inserted:
pg_async.AsyncPostgres (psycopg's AsyncConnection) and SQLiteLoopWriter below.

Bound to the loop that created it (uvicorn runs one loop per worker process).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, DateTime, Engine
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from fieldbank.decision.writer import (
    DECISIONS,
    MAX_BATCH,
    MAX_QUEUE,
    SHADOW,
    WRITE_TIMEOUT_S,
    DecisionLogBusy,
    late_error,
)

log = logging.getLogger("fieldbank.decision")
# How SQLAlchemy writes a DateTime(timezone=True) on SQLite (text, UTC wall time): fetch_all's
# raw sqlite3 parameters must match it.
_SQLITE_DATETIME = DateTime(timezone=True).dialect_impl(sqlite.dialect()).bind_processor(sqlite.dialect())
SQLITE_LOCK_RETRY_S = 0.0005  # the wait between tries for SQLite's write lock, on the loop


@dataclass
class _Row:
    decision: dict[str, Any]
    shadow: dict[str, Any] | None
    done: asyncio.Future


class LoopGroupCommit:
    def __init__(self, writers: int, *, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE,
                 timeout_s: float = WRITE_TIMEOUT_S) -> None:
        assert writers >= 1 and max_batch >= 1 and max_queue >= 1
        self.loop = asyncio.get_running_loop()
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[_Row | None] = asyncio.Queue(maxsize=max_queue)
        self.batches = 0
        self.rows = 0
        self._writers = [self.loop.create_task(self._write_loop(i), name=f"decision-log-writer-{i}")
                         for i in range(writers)]

    async def write(self, decision: dict[str, Any], shadow: dict[str, Any] | None = None) -> None:
        """Return once the row is committed; IntegrityError if its Idempotency-Key is taken. A
        queued row is committed even if the caller is cancelled (the client went away):
        asyncio.wait does not cancel the row's future."""
        row = _Row(decision, shadow, self.loop.create_future())
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            raise DecisionLogBusy(f"the decision log has {self._queue.qsize()} rows waiting; retry") from None
        done, _ = await asyncio.wait({row.done}, timeout=self.timeout_s)
        if not done:
            raise late_error(self.timeout_s)
        row.done.result()

    async def fetch_all(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        """The rows of one read (`sql` in the database driver's own parameter style)."""
        raise NotImplementedError

    async def _insert(self, slot: int, decisions: list[dict[str, Any]], shadows: list[dict[str, Any]]) -> None:
        """Insert the rows in one transaction on writer `slot`'s connection; raise SQLAlchemy's
        errors (IntegrityError for a duplicate key)."""
        raise NotImplementedError

    def _close_connections(self) -> None:
        raise NotImplementedError

    async def _write_loop(self, slot: int) -> None:
        """One writer: take what has queued (up to max_batch rows) and commit it."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and batch[-1] is not None and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            work = [r for r in batch if r is not None]
            if work:
                await self._commit(slot, work)
            if batch[-1] is None:
                return

    async def _commit(self, slot: int, work: list[_Row]) -> None:
        try:
            await self._insert(slot, [r.decision for r in work], [r.shadow for r in work if r.shadow is not None])
        except IntegrityError as e:
            if len(work) == 1:
                _resolve(work[0].done, e)
                return
            for r in work:  # find the duplicate(s): each row alone
                await self._commit(slot, [r])
            return
        except Exception as e:  # the database is down, full, ...: every waiting request fails
            log.exception("decision log: committing %d decisions failed", len(work))
            for r in work:
                _resolve(r.done, e)
            return
        self.batches += 1
        self.rows += len(work)
        for r in work:
            _resolve(r.done, None)

    async def aclose(self) -> None:
        """Commit what is queued, then close the connections."""
        for _ in self._writers:  # each writer stops at its None, after the rows queued before it
            await self._queue.put(None)
        await asyncio.gather(*self._writers)
        self._close_connections()

    def abandon(self) -> None:
        """Close the connections without the loop (it has stopped: a test client's loop). Rows
        can only be queued on a running loop, and each request awaited its own commit, so
        nothing is left unwritten."""
        for writer in self._writers:
            writer.cancel()
        self._close_connections()


class SQLiteLoopWriter(LoopGroupCommit):
    """SQLite: the commit runs inline on the loop. In WAL mode with synchronous=NORMAL a
    commit is an append to the WAL without fsync (well under a millisecond for a batch), so
    running it inline costs the loop less than the thread hand-offs it replaces. The loop must
    never block on a lock, though: the connection has no busy timeout, and when another writer
    holds SQLite's write lock (another worker process, or this process's writer thread, which
    serves the synchronous callers) the batch is tried again after an `asyncio.sleep` of
    SQLITE_LOCK_RETRY_S, instead of SQLite's busy handler sleeping 1, 2, 5 ... 25 ms on a thread.
    WAL checkpoints are the writer thread's checkpointer's (writer.py); this connection never
    checkpoints inside a commit."""

    def __init__(self, engine: Engine, write_lock: threading.Lock, **kwargs: Any) -> None:
        assert engine.dialect.name == "sqlite" and ":memory:" not in str(engine.url), engine.url
        self.engine = engine
        self.write_lock = write_lock  # this process's other writers take it too
        self._conn: Connection | None = None
        self._reader: Any = None  # a pooled sqlite3 connection for fetch_all, kept for the loop's life
        self.lock_waits = 0
        super().__init__(1, **kwargs)

    async def fetch_all(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        """One read, inline on the loop, on a connection of its own straight through sqlite3
        (SQLAlchemy's execute and pool check-out cost more than the read itself, ~0.4 ms a
        decision). The engine's connections run without an implicit transaction (we BEGIN
        ourselves, bank/db.py), so a SELECT holds no snapshot after it returns; in WAL mode it
        never waits for a writer."""
        if self._reader is None:
            self._reader = self.engine.raw_connection()  # with the engine's connect-time PRAGMAs
            assert self._reader.driver_connection.isolation_level is None
        # A datetime compares with the stored text only in SQLAlchemy's format for DateTime.
        params = {k: _SQLITE_DATETIME(v) if isinstance(v, dt.datetime) else v for k, v in params.items()}
        return self._reader.driver_connection.execute(sql, params).fetchall()

    def _connection(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
            raw = self._conn.connection.driver_connection
            raw.execute("PRAGMA busy_timeout=0")  # never sleep on the loop: see the class docstring
            raw.execute("PRAGMA wal_autocheckpoint=0")
        return self._conn

    async def _insert(self, slot: int, decisions: list[dict[str, Any]], shadows: list[dict[str, Any]]) -> None:
        deadline = self.loop.time() + self.timeout_s
        while True:
            if self.write_lock.acquire(blocking=False):
                try:
                    conn = self._connection()
                    with conn.begin():  # BEGIN IMMEDIATE (bank.db): fails at once if the lock is taken
                        conn.execute(DECISIONS.insert(), decisions)
                        if shadows:
                            conn.execute(SHADOW.insert(), shadows)
                    return
                except OperationalError as e:
                    if not _locked(e):
                        raise
                finally:
                    self.write_lock.release()
            if self.loop.time() > deadline:
                raise late_error(self.timeout_s)
            self.lock_waits += 1
            await asyncio.sleep(SQLITE_LOCK_RETRY_S)

    def _close_connections(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _locked(e: OperationalError) -> bool:
    return isinstance(e.orig, sqlite3.OperationalError) and "locked" in str(e.orig)


def _resolve(done: asyncio.Future, error: BaseException | None) -> None:
    if done.cancelled():  # only if someone cancelled it; rows are committed regardless
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
