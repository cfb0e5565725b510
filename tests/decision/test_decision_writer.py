"""The decision log's group-commit writer: rows queued while a commit runs share the next
transaction, a duplicate key fails only its own request, a failed commit fails its waiting
requests (and the writer goes on), and a full queue is a DecisionLogBusy, never a silent loss."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from fieldbank.decision.models import Decision, ShadowScore
from fieldbank.decision.store import migrate_decisions
from fieldbank.decision.writer import DecisionLogBusy, GroupCommitWriter

NOW = dt.datetime(2026, 1, 5, 9, 30, tzinfo=dt.UTC)


def row(n: int, key: str | None = None) -> dict:
    return {"decision_id": f"D{n:020x}", "idempotency_key": key or f"key-{n}", "request_hash": "h" * 64,
            "created_at": NOW, "party_id": f"P{n}", "phone_hash": None, "device_hash": None, "outcome": "refer",
            "grade": "unrated", "pd_12m": None, "limit_minor": 0, "apr_bps": None, "daily_rate_ppm": None,
            "expires_at": None, "portrait_as_of": None, "model_ref": None, "challenger_ref": None,
            "policy_name": None, "policy_version": None, "inputs_json": "{}", "facts_json": "{}",
            "rule_outcomes_json": "[]", "steps_json": "{}", "response_json": "{}"}


def count(engine, model) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(model)).scalar_one()


def stored_keys(engine) -> set[str]:  # noqa: ANN001
    with engine.connect() as conn:
        return set(conn.execute(select(Decision.idempotency_key)).scalars())


def wait_for(predicate, limit_s: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


@pytest.fixture
def log_engine(db_engine):  # noqa: ANN001, ANN201
    migrate_decisions(db_engine)
    return db_engine


def start_threads(targets: list) -> list[threading.Thread]:  # noqa: ANN001
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    return threads


def test_rows_that_queue_during_a_commit_share_the_next_one(log_engine) -> None:  # noqa: ANN001
    gate = threading.Lock()  # stands in for the service's write lock: holding it stalls the writer
    writer = GroupCommitWriter(log_engine, gate)
    try:
        gate.acquire()
        first = start_threads([lambda: writer.write(row(0), {"decision_id": f"D{0:020x}", "model_ref": "m",
                                                                 "pd_12m": 0.02, "scored_at": NOW})])
        wait_for(lambda: writer.queue.qsize() == 0)  # the writer holds row 0 and waits on the gate
        rest = start_threads([lambda n=n: writer.write(row(n)) for n in range(1, 11)])
        wait_for(lambda: writer.queue.qsize() == 10)
        gate.release()
        for t in first + rest:
            t.join(10)
        assert (writer.batches, writer.rows) == (2, 11)  # 1 row, then the 10 that queued meanwhile
        assert count(log_engine, Decision) == 11 and count(log_engine, ShadowScore) == 1
    finally:
        writer.close()


def test_a_duplicate_key_fails_only_its_own_request(log_engine) -> None:  # noqa: ANN001
    gate = threading.Lock()
    writer = GroupCommitWriter(log_engine, gate)
    errors: dict[int, BaseException] = {}

    def write(n: int, key: str) -> None:
        try:
            writer.write(row(n, key))
        except BaseException as e:  # noqa: BLE001 - recorded for the assertion
            errors[n] = e

    try:
        writer.write(row(0, "taken"))
        gate.acquire()
        threads = start_threads([lambda: write(1, "k1")])
        wait_for(lambda: writer.queue.qsize() == 0)
        threads += start_threads([lambda n=n, k=k: write(n, k) for n, k in ((2, "taken"), (3, "k3"), (4, "k3"))])
        wait_for(lambda: writer.queue.qsize() == 3)
        gate.release()
        for t in threads:
            t.join(10)
        # one batch of [2, 3, 4] failed on the duplicates; row by row, 3 lands and 2 and 4 fail
        assert set(errors) == {2, 4} and all(isinstance(e, IntegrityError) for e in errors.values())
        with log_engine.connect() as conn:
            keys = set(conn.execute(select(Decision.idempotency_key)).scalars())
        assert keys == {"taken", "k1", "k3"}
    finally:
        writer.close()


def test_a_failed_commit_fails_its_requests_and_the_writer_goes_on(log_engine) -> None:  # noqa: ANN001
    writer = GroupCommitWriter(log_engine, threading.Lock())
    try:
        broken = row(1) | {"outcome": None}  # NOT NULL: the database refuses the row
        with pytest.raises(IntegrityError):
            writer.write(broken)
        writer.write(row(2))
        assert count(log_engine, Decision) == 1
    finally:
        writer.close()


def test_a_full_queue_is_busy_not_lost(log_engine) -> None:  # noqa: ANN001
    gate = threading.Lock()
    writer = GroupCommitWriter(log_engine, gate, max_queue=1)
    try:
        gate.acquire()
        threads = start_threads([lambda: writer.write(row(1))])
        wait_for(lambda: writer.queue.qsize() == 0)  # row 1 is with the writer
        threads += start_threads([lambda: writer.write(row(2))])
        wait_for(lambda: writer.queue.qsize() == 1)  # row 2 fills the queue
        with pytest.raises(DecisionLogBusy, match="rows waiting"):
            writer.write(row(3), timeout_s=0.05)
        gate.release()
        for t in threads:
            t.join(10)
        with log_engine.connect() as conn:
            assert set(conn.execute(select(Decision.party_id)).scalars()) == {"P1", "P2"}
    finally:
        writer.close()


def test_write_async_waits_on_the_event_loop(log_engine) -> None:  # noqa: ANN001
    """The route's path: rows awaited from coroutines share commits like threaded ones, and a
    duplicate key is that coroutine's IntegrityError."""
    import asyncio

    writer = GroupCommitWriter(log_engine, threading.Lock())
    try:
        async def write_all() -> list:
            return await asyncio.gather(*(writer.write_async(row(n)) for n in range(20)),
                                        writer.write_async(row(99, key="key-3")), return_exceptions=True)

        outcomes = asyncio.run(write_all())
        assert outcomes[:20] == [None] * 20 and isinstance(outcomes[20], IntegrityError)
        assert count(log_engine, Decision) == 20
    finally:
        writer.close()


def test_sqlite_checkpoints_run_beside_the_writer(sqlite_engine) -> None:  # noqa: ANN001
    """SQLite: the writer's commits never checkpoint (a 1,000-page checkpoint inside a commit
    stalls every queued decision); a thread of its own moves the WAL into the database file."""
    migrate_decisions(sqlite_engine)
    writer = GroupCommitWriter(sqlite_engine, threading.Lock(), checkpoint_interval_s=0.05)
    try:
        for n in range(30):
            writer.write(row(n))
        assert writer._conn.connection.driver_connection.execute(  # noqa: SLF001
            "PRAGMA wal_autocheckpoint").fetchone() == (0,)
        done = writer.checkpoints
        wait_for(lambda: writer.checkpoints >= done + 2)  # one full interval after the last commit
        with sqlite_engine.connect() as conn:
            busy, wal_frames, moved = conn.connection.driver_connection.execute(
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and wal_frames == moved  # every frame already in the database file
        assert count(sqlite_engine, Decision) == 30
    finally:
        writer.close()
