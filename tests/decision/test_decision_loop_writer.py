"""The group commit on the event loop (loop_writer): rows share commits and a duplicate key
fails only its own request (SQLiteLoopWriter and AsyncPostgres); on SQLite, a write lock held
elsewhere is waited for on the loop (never in SQLite's busy handler), and a lock held past the
timeout is DecisionLogBusy with nothing written."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from sqlalchemy.exc import IntegrityError
from test_decision_writer import row, stored_keys

from fieldbank.decision.loop_writer import SQLiteLoopWriter
from fieldbank.decision.pg_async import AsyncPostgres
from fieldbank.decision.store import migrate_decisions
from fieldbank.decision.writer import DecisionLogBusy


@pytest.fixture
def log_engine(sqlite_engine):  # noqa: ANN001, ANN201
    migrate_decisions(sqlite_engine)
    return sqlite_engine


def test_rows_share_commits_and_a_duplicate_fails_alone(db_engine) -> None:  # noqa: ANN001
    """Both loop writers (SQLite inline, PostgreSQL over psycopg): rows that queue during a
    commit go into the next one together; a batch with a duplicate key fails whole and is
    written again row by row, so only the duplicate's request fails."""
    migrate_decisions(db_engine)

    async def main() -> tuple[list, int, list]:
        writer = SQLiteLoopWriter(db_engine, threading.Lock()) if db_engine.dialect.name == "sqlite" \
            else AsyncPostgres(db_engine)
        grouped = await asyncio.gather(*(writer.write(row(n)) for n in range(40)))
        batches = writer.batches
        mixed = await asyncio.gather(*(writer.write(row(n)) for n in range(40, 45)), writer.write(row(99, "key-7")),
                                     return_exceptions=True)
        await writer.aclose()
        return grouped, batches, mixed

    grouped, batches, mixed = asyncio.run(main())
    assert grouped == [None] * 40 and batches < 40
    assert mixed[:5] == [None] * 5 and isinstance(mixed[5], IntegrityError)  # key-7 was taken by row 7
    assert stored_keys(db_engine) == {f"key-{n}" for n in range(45)}


def test_a_write_lock_held_elsewhere_is_waited_for_on_the_loop(log_engine, tmp_path) -> None:  # noqa: ANN001
    other = sqlite3.connect(str(tmp_path / "bank.db"), isolation_level=None)

    async def main() -> tuple[int, int]:
        writer = SQLiteLoopWriter(log_engine, threading.Lock())
        await writer.write(row(1))  # connected
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds SQLite's write lock
        pending = asyncio.ensure_future(writer.write(row(2)))
        ticks = 0
        while writer.lock_waits < 3:  # the loop keeps running while the writer waits
            ticks += 1
            await asyncio.sleep(0.001)
        other.execute("COMMIT")
        await pending
        await writer.aclose()
        return writer.lock_waits, ticks

    waits, ticks = asyncio.run(main())
    other.close()
    assert waits >= 3 and ticks >= 1
    assert stored_keys(log_engine) == {"key-1", "key-2"}


def test_a_lock_held_past_the_timeout_is_busy_and_nothing_is_written(log_engine, tmp_path) -> None:  # noqa: ANN001
    other = sqlite3.connect(str(tmp_path / "bank.db"), isolation_level=None)

    async def main() -> BaseException | None:
        writer = SQLiteLoopWriter(log_engine, threading.Lock(), timeout_s=0.05)
        other.execute("BEGIN IMMEDIATE")
        try:
            await writer.write(row(3))
        except DecisionLogBusy as e:
            error = e
        else:
            error = None
        await asyncio.sleep(0.1)  # the writer gave up too
        other.execute("COMMIT")
        await writer.aclose()
        return error

    assert isinstance(asyncio.run(main()), DecisionLogBusy)
    other.close()
    assert stored_keys(log_engine) == set()


def test_this_process_writer_thread_and_the_loop_writer_share_the_lock(log_engine) -> None:  # noqa: ANN001
    lock = threading.Lock()

    async def main() -> None:
        writer = SQLiteLoopWriter(log_engine, lock)
        lock.acquire()  # this process's writer thread is mid-commit
        pending = asyncio.ensure_future(writer.write(row(4)))
        while writer.lock_waits < 2:
            await asyncio.sleep(0.001)
        lock.release()
        await pending
        await writer.aclose()

    asyncio.run(main())
    assert stored_keys(log_engine) == {"key-4"}
