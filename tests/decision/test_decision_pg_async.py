"""The decision route's PostgreSQL I/O on the event loop (pg_async.AsyncPostgres): a full
queue is DecisionLogBusy and never a silent loss, killed backends are replaced, and closing
commits what is queued (group commits and duplicates: test_decision_loop_writer)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text
from test_decision_writer import row, stored_keys

from fieldbank.decision.models import Decision
from fieldbank.decision.pg_async import AsyncPostgres
from fieldbank.decision.store import migrate_decisions
from fieldbank.decision.writer import DecisionLogBusy

pytestmark = pytest.mark.pg


@pytest.fixture
def log_engine(pg_engine):  # noqa: ANN001, ANN201
    migrate_decisions(pg_engine)
    return pg_engine


def test_a_full_queue_is_busy_and_every_accepted_row_is_committed(log_engine) -> None:  # noqa: ANN001
    async def main() -> list:
        pg = AsyncPostgres(log_engine, max_queue=3)
        outcomes = await asyncio.gather(*(pg.write(row(n)) for n in range(20)), return_exceptions=True)
        await pg.aclose()
        return outcomes

    outcomes = asyncio.run(main())
    busy = [n for n, o in enumerate(outcomes) if isinstance(o, DecisionLogBusy)]
    written = [n for n, o in enumerate(outcomes) if o is None]
    assert busy and written and len(busy) + len(written) == 20
    assert stored_keys(log_engine) == {f"key-{n}" for n in written}


def test_killed_backends_are_replaced_for_reads_and_writes(log_engine) -> None:  # noqa: ANN001
    async def main() -> list:
        pg = AsyncPostgres(log_engine, read_connections=2, write_connections=2)
        for n in (1, 2):  # one after the other: the two writers take turns, so both connect
            await pg.write(row(n))
        await asyncio.gather(*(pg.fetch_all("SELECT pg_sleep(0.05)", {}) for _ in range(2)))  # opens both
        pids = [c.info.backend_pid for c in pg._connections()]  # noqa: SLF001
        assert len(pids) == 4
        with log_engine.connect() as admin:
            killed = [admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": p}).scalar_one() for p in pids]
        assert killed == [True] * 4
        await asyncio.sleep(0.1)  # let the terminations land
        got = await pg.fetch_all("SELECT count(*) FROM decisions", {})
        for n in (3, 4):
            await pg.write(row(n))
        await pg.aclose()
        return got

    assert asyncio.run(main()) == [(2,)]
    assert stored_keys(log_engine) == {"key-1", "key-2", "key-3", "key-4"}


def test_close_commits_what_is_queued(log_engine) -> None:  # noqa: ANN001
    async def main() -> None:
        pg = AsyncPostgres(log_engine)
        writes = [asyncio.ensure_future(pg.write(row(n))) for n in range(10)]
        await asyncio.sleep(0)  # every write is queued
        await pg.aclose()
        await asyncio.gather(*writes)

    asyncio.run(main())
    with log_engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Decision)).scalar_one() == 10
