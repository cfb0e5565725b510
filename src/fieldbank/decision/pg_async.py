"""PostgreSQL I/O of `POST /v1/applications` on the event loop: the lookup and the decision
log's group commit over psycopg's AsyncConnection, with no thread in between (why: see
loop_writer.py; at 300 decisions/s on one process, reads on a worker thread and commits on the
writer thread gave a p99 of 84-94 ms with the machine half idle, the write step alone 56-63 ms).

- Reads: up to `read_connections` autocommit connections (one round trip a read; psycopg
  prepares a statement after its fifth use and keeps it, as autocommit does not drop it).
- Writes: loop_writer.LoopGroupCommit with two writers, each on its own connection, so two
  commits can be in flight; a batch's BEGIN, INSERTs and COMMIT leave in one message
  (pipeline mode): one round trip per batch.
- A connection found broken (database restart, killed backend) is dropped and the read or
  batch tried once more on a new one. Errors are re-raised as SQLAlchemy's (IntegrityError
  for a duplicate Idempotency-Key), so the service handles both databases alike.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from fieldbank.decision.loop_writer import LoopGroupCommit
from fieldbank.decision.writer import DECISIONS, SHADOW, insert_sql

log = logging.getLogger("fieldbank.decision")
# Concurrent reads per process. A lookup is one ~0.3 ms round trip, so 4 serve thousands a
# second; a burst beyond that waits on the semaphore, not for a new PostgreSQL process.
READ_CONNECTIONS = 4
# Commits in flight at once: while one batch waits for its WAL flush, the next is already on
# its way on the other connection (PostgreSQL flushes concurrent commits together), so a slow
# flush delays one batch instead of every batch queued behind it.
WRITE_CONNECTIONS = 2
CONNECT_TIMEOUT_S = 10


class AsyncPostgres(LoopGroupCommit):
    def __init__(self, engine: Engine, *, read_connections: int = READ_CONNECTIONS,
                 write_connections: int = WRITE_CONNECTIONS, **kwargs: Any) -> None:
        assert engine.dialect.name == "postgresql", engine.dialect.name
        assert read_connections >= 1
        self.dialect = engine.dialect
        # The engine's URL (schema in its options) as a libpq URI: drop SQLAlchemy's "+psycopg".
        self.conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._idle: list[psycopg.AsyncConnection] = []
        self._read_slots = asyncio.Semaphore(read_connections)
        self._write_conns: list[psycopg.AsyncConnection | None] = [None] * write_connections
        super().__init__(write_connections, **kwargs)

    async def _connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True,
                                                     connect_timeout=CONNECT_TIMEOUT_S)

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

    async def _insert(self, slot: int, decisions: list[dict[str, Any]], shadows: list[dict[str, Any]]) -> None:
        statement = insert_sql(DECISIONS, tuple(decisions[0]), self.dialect)
        for attempt in (1, 2):
            if self._write_conns[slot] is None:
                self._write_conns[slot] = await self._connect()
            conn = self._write_conns[slot]
            try:
                async with conn.pipeline(), conn.transaction(), conn.cursor() as cursor:
                    await cursor.executemany(statement, decisions)
                    if shadows:
                        await cursor.executemany(insert_sql(SHADOW, tuple(shadows[0]), self.dialect), shadows)
                return
            except psycopg.Error as e:
                if not conn.broken:
                    raise self._sqlalchemy_error(statement, e, conn) from e
                self._write_conns[slot] = None
                await conn.close()
                if attempt == 2:
                    raise self._sqlalchemy_error(statement, e, conn) from e
                log.warning("decision log: the database connection was dropped; writing again on a new one")

    def _sqlalchemy_error(self, statement: str, e: psycopg.Error, conn: psycopg.AsyncConnection) -> DBAPIError:
        return DBAPIError.instance(statement, None, e, psycopg.Error, connection_invalidated=conn.broken,
                                   dialect=self.dialect)

    def _close_connections(self) -> None:
        """Closed without awaiting (libpq's finish): also used when the loop has stopped."""
        for conn in self._connections():
            conn.pgconn.finish()
        self._idle.clear()
        self._write_conns = [None] * len(self._write_conns)

    def _connections(self) -> list[psycopg.AsyncConnection]:
        return [*self._idle, *(c for c in self._write_conns if c is not None)]

