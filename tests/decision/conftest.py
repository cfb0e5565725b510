"""Fixtures for the decision tests: one small simulated economy with portraits and a promoted
champion (built once per test session and shared by the xdist workers through a file lock),
and bank databases on SQLite and PostgreSQL (a schema per test; pg fails, never skips)."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pytest

from fieldbank.bank.db import make_engine, migrate, scratch_schema_engine
from fieldbank.bank.service import BankService
from fieldbank.config import load_settings
from fieldbank.risk.testing import trained_economy

PG_URL = os.environ.get("FIELDBANK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ECONOMY_PARTIES = 3000


@pytest.fixture(scope="session")
def economy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only data dir (lake, portraits, models). Tests that change files copy it."""
    root = tmp_path_factory.getbasetemp().parent  # shared by the xdist workers of this run
    data_dir = root / "decision_economy"
    with open(root / "decision_economy.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (data_dir / ".complete").exists():
            shutil.rmtree(data_dir, ignore_errors=True)
            trained_economy(data_dir, parties=ECONOMY_PARTIES, promote=True)
            (data_dir / ".complete").touch()
    return data_dir


def _pg_engine(request: pytest.FixtureRequest):  # noqa: ANN202
    engine, drop = scratch_schema_engine(PG_URL, "fbd")
    request.addfinalizer(drop)
    return engine


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db_engine(request: pytest.FixtureRequest, tmp_path: Path):  # noqa: ANN201
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
        request.addfinalizer(engine.dispose)
    else:
        engine = _pg_engine(request)
    migrate(engine)
    return engine


@pytest.fixture
def pg_engine(request: pytest.FixtureRequest):  # noqa: ANN201
    engine = _pg_engine(request)
    migrate(engine)
    return engine


@pytest.fixture
def sqlite_engine(tmp_path: Path):  # noqa: ANN201
    engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def make_service(economy: Path):  # noqa: ANN201
    """make_service(engine, data_dir=..., **decision_settings) -> DecisionService (closed after the test)."""
    from fieldbank.decision.service import DecisionService

    made = []

    def make(engine, data_dir: Path | None = None, clock=None, **decision):  # noqa: ANN001, ANN202
        settings = load_settings(data_dir=data_dir or economy)
        if decision:
            settings = settings.model_copy(update={"decision": settings.decision.model_copy(update=decision)})
        bank = BankService(engine)
        bank.ensure_products()
        service = DecisionService(engine, settings, bank, clock=clock)
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()
