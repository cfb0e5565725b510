"""Group commit for the decision log: one thread writes, requests wait for their commit.

A request hands its decision row (and the challenger's shadow row) to a bounded queue and
blocks until the row is committed, so a 201 still means "on disk in the log". The writer
thread takes whatever has queued up meanwhile (up to MAX_BATCH rows) and commits it in one
transaction: under load, one commit (SQLite's WAL append and checkpoint, PostgreSQL's round
trips and WAL flush) serves many decisions instead of each request queueing for its own.

A duplicate Idempotency-Key fails the whole batch's INSERT; the batch is then written again
row by row, each in its own transaction, so only the duplicate's request gets the
IntegrityError (and answers with the stored winner, as before). A full queue or a commit
that does not finish in WRITE_TIMEOUT_S raises DecisionLogBusy (HTTP 503): the request is
not decided, nothing is half-written, and the client may retry with the same key.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from fieldbank.decision.models import Decision, ShadowScore

log = logging.getLogger("fieldbank.decision")
DECISIONS = Decision.__table__
SHADOW = ShadowScore.__table__
MAX_BATCH = 256  # rows per transaction: bounds the commit's time and the rows one failure retries
MAX_QUEUE = 4096  # waiting requests; beyond this the log is behind and requests get a 503
WRITE_TIMEOUT_S = 10.0
CHECKPOINT_INTERVAL_S = 1.0  # SQLite: how often the WAL is moved into the database file
_STOP = object()


class DecisionLogBusy(Exception):
    """The decision log could not take or commit the row in time; nothing was written."""


@functools.lru_cache(maxsize=32)
def insert_sql(table: Any, columns: tuple[str, ...], dialect: Any) -> str:
    """The INSERT of `columns` into `table` in the dialect's parameter style (psycopg: named
    %(x)s), compiled once: the pipelined PostgreSQL writers run it with raw executemany."""
    return str(table.insert().compile(dialect=dialect, column_keys=list(columns)))


def late_error(timeout_s: float) -> DecisionLogBusy:
    # Still queued or mid-commit: we cannot say it was not written, so the client must retry
    # with the same Idempotency-Key, which answers with the stored row if it landed.
    return DecisionLogBusy(f"the decision log did not commit within {timeout_s} s; retry with the same "
                           "Idempotency-Key")


@dataclass
class _Pending:
    decision: dict[str, Any]
    shadow: dict[str, Any] | None
    done: Future = field(default_factory=Future)


class GroupCommitWriter:
    def __init__(self, engine: Engine, write_lock: Any, *, max_batch: int = MAX_BATCH,
                 max_queue: int = MAX_QUEUE, timeout_s: float = WRITE_TIMEOUT_S,
                 checkpoint_interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self.engine = engine
        self.write_lock = write_lock  # the service's (SQLite: one writer at a time in this process)
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._conn: Connection | None = None  # only the writer thread uses it
        self.batches = 0
        self.rows = 0
        self._thread = threading.Thread(target=self._run, name="decision-log-writer", daemon=True)
        self._thread.start()
        self.checkpoint_interval_s = checkpoint_interval_s
        self._stopping = threading.Event()
        self.checkpoints = 0
        self._checkpointer: threading.Thread | None = None
        if engine.dialect.name == "sqlite" and ":memory:" not in str(engine.url):
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="decision-log-checkpoint",
                                                  daemon=True)
            self._checkpointer.start()

    def write(self, decision: dict[str, Any], shadow: dict[str, Any] | None = None,
              timeout_s: float | None = None) -> None:
        """Block until the row is committed; IntegrityError if its Idempotency-Key (or id) is taken."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        pending = self._enqueue(decision, shadow, timeout_s)
        try:
            pending.done.result(timeout=timeout_s)
        except FutureTimeout:
            raise late_error(timeout_s) from None

    async def write_async(self, decision: dict[str, Any], shadow: dict[str, Any] | None = None) -> None:
        """`write` for a coroutine: waits for the commit on the event loop, not on a thread. A
        queued row is committed whatever happens to the caller: asyncio.wait does not cancel
        the row's future when the caller is cancelled (the client went away)."""
        pending = self._enqueue(decision, shadow, 0)
        waiter = asyncio.wrap_future(pending.done)
        done, _ = await asyncio.wait({waiter}, timeout=self.timeout_s)  # wait() does not cancel on timeout
        if not done:
            raise late_error(self.timeout_s)
        waiter.result()

    def _enqueue(self, decision: dict[str, Any], shadow: dict[str, Any] | None, timeout_s: float) -> _Pending:
        pending = _Pending(decision, shadow)
        try:
            self.queue.put(pending, timeout=timeout_s) if timeout_s else self.queue.put_nowait(pending)
        except queue.Full:
            raise DecisionLogBusy(f"the decision log has {self.queue.qsize()} rows waiting; retry") from None
        return pending

    def close(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout_s)
        try:
            self.queue.put(_STOP, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        if self._conn is not None and not self._thread.is_alive():
            self._conn.close()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            while len(batch) < self.max_batch and batch[-1] is not _STOP:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            # Mark the futures running, so nothing can cancel them mid-commit (nothing cancels
            # them today; one that was cancelled would be dropped unwritten, never half-reported).
            work = [p for p in batch if p is not _STOP and p.done.set_running_or_notify_cancel()]
            if work:
                self._commit(work)
            if stop:
                return

    def _insert(self, work: list[_Pending]) -> None:
        """One transaction on the writer's own connection, kept open between batches: a pool
        checkout would add the pre-ping round trip to every commit. A connection found dead
        (database restart) is replaced and the batch tried once more; if the first try's
        COMMIT did land, the second fails on the unique keys and each request then answers
        with its stored row, as for any duplicate."""
        decisions = [p.decision for p in work]
        shadows = [p.shadow for p in work if p.shadow is not None]
        for attempt in (1, 2):
            with self.write_lock:
                if self._conn is None:
                    self._conn = self.engine.connect()
                    if self._checkpointer is not None:  # SQLite: see _checkpoint_loop
                        self._conn.connection.driver_connection.execute("PRAGMA wal_autocheckpoint=0")
                try:
                    if self.engine.dialect.name == "postgresql":
                        self._insert_pipelined(decisions, shadows)
                    else:
                        with self._conn.begin():
                            self._conn.execute(DECISIONS.insert(), decisions)  # one executemany
                            if shadows:
                                self._conn.execute(SHADOW.insert(), shadows)
                    return
                except DBAPIError as e:
                    if not e.connection_invalidated:
                        raise
                    self._conn.invalidate()
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
                    log.warning("decision log: the database connection was dropped; writing again on a new one")

    def _checkpoint_loop(self) -> None:
        """SQLite: move the WAL into the database file every checkpoint_interval_s, off the
        writer's thread. By default the commit that takes the WAL past 1,000 pages does the
        checkpoint itself (copy and fsync, 100-250 ms here), and every decision queued behind
        it waits that long: the load test's one big stall per run. A PASSIVE checkpoint runs
        beside the writer and the readers without blocking either, and keeps the WAL to about
        one interval of decisions. On its own connection, in autocommit (no BEGIN)."""
        raw = self.engine.raw_connection()
        try:
            while not self._stopping.wait(self.checkpoint_interval_s):
                try:
                    raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except Exception:  # a busy or failing checkpoint is retried next interval
                    log.exception("decision log: WAL checkpoint failed")
        finally:
            raw.close()

    def _insert_pipelined(self, decisions: list[dict[str, Any]], shadows: list[dict[str, Any]]) -> None:
        """PostgreSQL: psycopg's pipeline mode, so BEGIN, both INSERTs and the COMMIT leave in
        one message and the batch costs one round trip instead of four. Under load each round
        trip is a wait for the server and then for the GIL, which the event loop holds while
        it decides other applications: four of them were most of a decision's latency.
        Errors are re-raised as SQLAlchemy's (IntegrityError for a duplicate key), as on SQLite."""
        raw = self._conn.connection.dbapi_connection
        statement = insert_sql(DECISIONS, tuple(decisions[0]), self.engine.dialect)
        try:
            with raw.pipeline(), raw.transaction(), raw.cursor() as cursor:
                cursor.executemany(statement, decisions)
                if shadows:
                    cursor.executemany(insert_sql(SHADOW, tuple(shadows[0]), self.engine.dialect), shadows)
        except psycopg.Error as e:
            raise DBAPIError.instance(statement, None, e, psycopg.Error, connection_invalidated=raw.closed,
                                      dialect=self.engine.dialect) from e

    def _commit(self, work: list[_Pending]) -> None:
        try:
            self._insert(work)
        except IntegrityError as e:
            if len(work) == 1:
                work[0].done.set_exception(e)
                return
            for p in work:  # find the duplicate(s): each row alone
                self._commit([p])
            return
        except Exception as e:  # the database is down, full, ...: every waiting request fails
            log.exception("decision log: committing %d decisions failed", len(work))
            for p in work:
                p.done.set_exception(e)
            return
        self.batches += 1
        self.rows += len(work)
        for p in work:
            p.done.set_result(None)
