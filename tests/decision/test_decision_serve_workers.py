"""`fieldbank serve --workers 2`: two server processes on one port share the decision log.
Migrated once before the workers start, every 201 is one stored decision, and concurrent
duplicates of one Idempotency-Key sent to both workers make one decision."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from fieldbank.api.process import serving
from fieldbank.bank.db import scratch_schema_engine

from decision_data import copy_economy, portrait_parties

pytestmark = pytest.mark.slow
PG_URL = os.environ.get("FIELDBANK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
STARTUP_LIMIT_S = 180


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bank.db'}"
    engine, drop = scratch_schema_engine(PG_URL, "fbw")
    with engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    engine.dispose()
    request.addfinalizer(drop)
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


def test_two_workers_share_one_decision_log(economy: Path, tmp_path: Path, database_url: str) -> None:
    data_dir = copy_economy(economy, tmp_path / "data")  # the server writes its web secret there
    parties = portrait_parties(economy)[:40]
    with serving(data_dir, extra_args=["--database-url", database_url, "--workers", "2"],
                 startup_limit_s=STARTUP_LIMIT_S, ready_path="/v1/status",
                 ready=lambda r: r.status_code == 200 and r.json().get("ready") is True) as served:
        workers = psutil.Process(served.process.pid).children(recursive=True)
        assert len([p for p in workers if "python" in p.name().lower()]) >= 2, workers

        def apply(i: int, key: str) -> httpx.Response:
            body = {"party_id": parties[i % len(parties)], "consent": True, "requested_amount_minor": 300_000,
                    "term_days": 180, "purpose": "working_capital"}
            with httpx.Client(base_url=served.base_url, timeout=60) as client:  # a connection each: both workers
                return client.post("/v1/applications", json=body, headers={"Idempotency-Key": key})

        jobs = [(i, f"w-{i}") for i in range(40)] + [(0, "same-key")] * 12
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda job: apply(*job), jobs))
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses if r.status_code >= 300]
    same = {r.json()["decision_id"] for r, (_, key) in zip(responses, jobs) if key == "same-key"}
    assert len(same) == 1
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            keys = dict(conn.execute(text("SELECT idempotency_key, count(*) FROM decisions GROUP BY idempotency_key")).all())
    finally:
        engine.dispose()
    assert keys == {**{f"w-{i}": 1 for i in range(40)}, "same-key": 1}
    assert sum(r.status_code == 201 for r in responses) == 41  # one creation per key, the rest replays
