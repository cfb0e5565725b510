"""Fixtures: every bank test runs on SQLite (a file per test) and on PostgreSQL (a schema per
test, dropped afterwards, so pytest-xdist workers never collide on the shared `test` database).
The pg-marked half fails, never skips, when PostgreSQL is missing."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from fieldbank.bank.db import make_engine, migrate, scratch_schema_engine
from fieldbank.bank.service import BankService

PG_URL = os.environ.get("FIELDBANK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_engine(request: pytest.FixtureRequest):  # noqa: ANN202
    engine, drop = scratch_schema_engine(PG_URL, "fbt")
    request.addfinalizer(drop)
    return engine


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def engine_factory(request: pytest.FixtureRequest, tmp_path):  # noqa: ANN001, ANN201
    """Makes fresh, migrated bank databases of the parametrized kind (several per test if needed)."""
    made: list[int] = []

    def make():  # noqa: ANN202
        made.append(1)
        if request.param == "sqlite":
            eng = make_engine(f"sqlite:///{tmp_path / f'bank{len(made)}.db'}")
            request.addfinalizer(eng.dispose)
        else:
            eng = _pg_engine(request)
        migrate(eng)
        return eng

    return make


@pytest.fixture
def engine(engine_factory):  # noqa: ANN001, ANN201
    return engine_factory()


@pytest.fixture
def pg_engine(request: pytest.FixtureRequest):  # noqa: ANN201
    eng = _pg_engine(request)
    migrate(eng)
    return eng


def snapshot(engine) -> dict:  # noqa: ANN001
    """Everything that makes up the books, minus wall-clock timestamps: for crash/rerun equality."""
    with engine.connect() as conn:
        out = {}
        for table, order in (("journal_lines", "entry_id, line_no"), ("loans", "loan_id"),
                             ("installments", "loan_id, seq"), ("allowance_balances", "bucket"),
                             ("close_day_steps", "business_date, step")):
            rows = conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}")).mappings().all()
            out[table] = [{k: v for k, v in r.items() if k not in ("done_at", "created_at")} for r in rows]
        out["entries"] = conn.execute(text(
            "SELECT entry_id, business_date, kind, loan_id, line_count, reverses_entry_id FROM journal_entries "
            "ORDER BY entry_id")).all()
    return out


@pytest.fixture
def bank(engine) -> BankService:  # noqa: ANN001
    service = BankService(engine)
    service.ensure_products()
    return service
