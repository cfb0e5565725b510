"""PostgreSQL I/O of `POST /v1/applications` on the event loop: the lookup and the decision
log's group commit over psycopg's AsyncConnection, with no thread in between.

Why not threads: one `fieldbank serve` process decides on its event loop, which holds the
GIL for ~2.5 ms per decision. A read on a worker thread, or a commit on the writer thread,
needs the GIL back after every wait on the socket, and a thread waiting for a busy holder
gets it only at the next switch interval (5 ms). At 300 decisions/s on one process those
waits chained into a p99 of 60-95 ms, most of it in the write step, with the machine half
idle. On the loop, a finished socket wait is just the next callback: the request waits for
PostgreSQL and for the loop's other work, never for a thread hand-off.

- Reads: up to `read_connections` autocommit connections (one round trip a read; psycopg
  prepares a statement after its fifth use and keeps it, as autocommit does not drop it).
- Writes: rows queue on the loop; a writer task commits whatever has queued (up to
  max_batch) in one pipelined transaction (BEGIN, the INSERTs, COMMIT in one round trip),
  like the threaded GroupCommitWriter, and each request's future is resolved when its row
  is durable. Two writers, each on its own connection, so two commits can be in flight.
- A connection found broken (database restart, killed backend) is dropped and the read or
  batch tried once more on a new one. Errors are re-raised as SQLAlchemy's (IntegrityError
  for a duplicate Idempotency-Key), so the service handles both paths alike.

Bound to the loop that created it (uvicorn runs one loop per worker process).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.sql.elements import ClauseElement

from fieldbank.decision.models import Decision, ShadowScore
from fieldbank.decision.writer import MAX_BATCH, MAX_QUEUE, WRITE_TIMEOUT_S, DecisionLogBusy, late_error

log = logging.getLogger("fieldbank.decision")
DECISIONS = Decision.__table__
SHADOW = ShadowScore.__table__
# Concurrent reads per process. A lookup is one ~0.3 ms round trip, so 4 serve thousands a
# second; a burst beyond that waits on the semaphore, not for a new PostgreSQL process.
READ_CONNECTIONS = 4
# Commits in flight at once: while one batch waits for its WAL flush, the next is already on
# its way on the other connection (PostgreSQL flushes concurrent commits together), so a slow
# flush delays one batch instead of every batch queued behind it.
WRITE_CONNECTIONS = 2
CONNECT_TIMEOUT_S = 10


@dataclass
class _Row:
    decision: dict[str, Any]
    shadow: dict[str, Any] | None
    done: asyncio.Future


class AsyncPostgres:
    def __init__(self, engine: Engine, *, read_connections: int = READ_CONNECTIONS,
                 write_connections: int = WRITE_CONNECTIONS, max_batch: int = MAX_BATCH, max_queue: int = MAX_QUEUE,
                 timeout_s: float = WRITE_TIMEOUT_S) -> None:
        assert engine.dialect.name == "postgresql", engine.dialect.name
        assert read_connections >= 1 and write_connections >= 1 and max_batch >= 1
        self.loop = asyncio.get_running_loop()
        self.dialect = engine.dialect
        # The engine's URL (schema in its options) as a libpq URI: drop SQLAlchemy's "+psycopg".
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._idle: list[psycopg.AsyncConnection] = []
        self._read_slots = asyncio.Semaphore(read_connections)
        self._write_conns: list[psycopg.AsyncConnection | None] = [None] * write_connections
        self._queue: asyncio.Queue[_Row | None] = asyncio.Queue(maxsize=max_queue)
        self._sql: dict[tuple[str, tuple[str, ...]], str] = {}
        self.batches = 0
        self.rows = 0
        self._writers = [self.loop.create_task(self._write_loop(i), name=f"decision-log-writer-{i}")
                         for i in range(write_connections)]

    def compile(self, statement: ClauseElement) -> str:
        """A SQLAlchemy statement as psycopg SQL (named %(x)s parameters)."""
        return str(statement.compile(dialect=self.dialect))

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True,
                                                     connect_timeout=CONNECT_TIMEOUT_S)

    # ---- reads ---------------------------------------------------------------------------

    async def fetch_all(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        """The rows of one read, tried once more on a new connection if the one used was broken
        (the idle ones are then closed too, as SQLAlchemy's pool invalidates older connections)."""
        async with self._read_slots:
            for attempt in (1, 2):
                conn = self._idle.pop() if self._idle else await self._connect()
                try:
                    cursor = await conn.execute(sql, params)
                    rows = await cursor.fetchall()
                except psycopg.Error as e:
                    if not conn.broken:
                        self._idle.append(conn)
                    else:
                        await conn.close()
                        if attempt == 1:  # after a restart the idle ones are dead too: start afresh
                            log.warning("decision service: a database connection was dropped; reading again")
                            while self._idle:
                                await self._idle.pop().close()
                            continue
                    raise self._sqlalchemy_error(sql, e, conn) from e
                self._idle.append(conn)
                return rows
        raise AssertionError("unreachable")

    # ---- the decision log ----------------------------------------------------------------

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

    async def _write_loop(self, slot: int) -> None:
        """One writer: take what has queued (up to max_batch rows), commit it on connection `slot`."""
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
            await self._insert(slot, work)
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

    async def _insert(self, slot: int, work: list[_Row]) -> None:
        decisions = [r.decision for r in work]
        shadows = [r.shadow for r in work if r.shadow is not None]
        statement = self._insert_sql(DECISIONS, decisions[0])
        for attempt in (1, 2):
            if self._write_conns[slot] is None:
                self._write_conns[slot] = await self._connect()
            conn = self._write_conns[slot]
            try:
                async with conn.pipeline(), conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(statement, decisions)
                    if shadows:
                        await cursor.executemany(self._insert_sql(SHADOW, shadows[0]), shadows)
                return
            except psycopg.Error as e:
                if not conn.broken:
                    raise self._sqlalchemy_error(statement, e, conn) from e
                self._write_conns[slot] = None
                await conn.close()
                if attempt == 2:
                    raise self._sqlalchemy_error(statement, e, conn) from e
                log.warning("decision log: the database connection was dropped; writing again on a new one")

    def _insert_sql(self, table: Any, row: dict[str, Any]) -> str:
        """The INSERT for rows with `row`'s keys (cached)."""
        key = (table.name, tuple(row))
        if key not in self._sql:
            self._sql[key] = str(table.insert().compile(dialect=self.dialect, column_keys=list(row)))
        return self._sql[key]

    def _sqlalchemy_error(self, statement: str, e: psycopg.Error, conn: psycopg.AsyncConnection) -> DBAPIError:
        return DBAPIError.instance(statement, None, e, psycopg.Error, connection_invalidated=conn.broken,
                                   dialect=self.dialect)

    # ---- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Commit what is queued, then close every connection."""
        for _ in self._writers:  # each writer stops at its None, after the rows queued before it
            await self._queue.put(None)
        await asyncio.gather(*self._writers)
        for conn in self._connections():
            await conn.close()
        self._idle.clear()
        self._write_conns = [None] * len(self._writers)

    def abandon(self) -> None:
        """Close the connections without the loop (it has stopped: a test client's loop). Rows
        can only be queued on a running loop, and each request awaited its own commit, so
        nothing is left unwritten."""
        for writer in self._writers:
            writer.cancel()
        for conn in self._connections():
            conn.pgconn.finish()
        self._idle.clear()
        self._write_conns = [None] * len(self._writers)

    def _connections(self) -> list[psycopg.AsyncConnection]:
        return [*self._idle, *(c for c in self._write_conns if c is not None)]


def _resolve(done: asyncio.Future, error: BaseException | None) -> None:
    if done.cancelled():  # only if someone cancelled it; rows are committed regardless
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
