"""Queries of one DuckDB database run side by side in threads, each thread on its own cursor.

Much of a portrait query's time is spent where DuckDB uses one thread (binding the SQL, a
projection over one 100k-row Arrow batch, converting the result to Arrow), so on two cores two
queries at a time finish sooner than one after the other (the latest portrait's family queries
at 5M payments: 1.23 s one after the other, 0.81-0.95 s two at a time, measured). DuckDB
releases the GIL while it executes, and a cursor is used by one thread only.

A cursor is a new connection to the same database: it sees the persistent tables, not the
creating connection's temporary views or registered Arrow tables, so each cursor re-creates
the views that existed when the pool was made and registers the Arrow tables given to
`register` before it runs a job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import duckdb
import ibis
import pyarrow as pa

from fieldbank.portrait.engine import temp_views

T = TypeVar("T")
THREADS = 2  # the machines this runs on have 2 cores; more threads only contend
_ARROW_VIEW = "python_arrow_scan"  # how DuckDB shows a view over a registered Python object


class CursorPool:
    """`submit(job)` runs `job(cursor)` in one of `threads` threads on that thread's cursor."""

    def __init__(self, con: ibis.BaseBackend, threads: int = THREADS) -> None:
        raw: duckdb.DuckDBPyConnection = con.con  # noqa: SLF001 - the DuckDB connection under the backend
        self._raw = raw
        self._views: list[str] = []
        self._arrow: dict[str, pa.Table] = {}
        for name, sql in temp_views(raw):
            if _ARROW_VIEW in sql:  # a registered Arrow table (an empty lake table): copied, it is small
                self._arrow[name] = raw.sql(f'SELECT * FROM "{name}"').to_arrow_table()
            else:
                self._views.append(sql)
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="portrait-cursor")

    def register(self, name: str, table: pa.Table) -> None:
        """Make `table` visible as `name` to the jobs submitted after this call."""
        with self._lock:
            self._arrow[name] = table

    def submit(self, job: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        with self._lock:
            arrow = dict(self._arrow)
        return self._pool.submit(lambda: job(self._cursor(arrow)))

    def _cursor(self, arrow: dict[str, pa.Table]) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._raw.cursor()
            cur.execute("SET TimeZone = 'UTC'")  # as engine.configure_duckdb: the point-in-time rule is in UTC
            cur.execute("SET enable_progress_bar = false")
            for sql in self._views:
                cur.execute(sql)
            self._local.cursor = cur
            self._local.registered = {}
            with self._lock:
                self._cursors.append(cur)
        registered: dict[str, pa.Table] = self._local.registered
        for name, table in arrow.items():
            if registered.get(name) is not table:
                cur.register(name, table)
                registered[name] = table
        return cur

    def run_here(self, job: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`job` on the pool's own connection, in the calling thread (which must not be using
        that connection meanwhile): for work that should not queue behind the pool's jobs."""
        return job(self._raw)

    def close(self) -> None:
        """Wait for the jobs, then close the cursors."""
        self._pool.shutdown(wait=True)
        for cur in self._cursors:
            cur.close()
        self._cursors.clear()
