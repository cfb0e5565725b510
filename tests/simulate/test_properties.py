"""Invariants hold for any small size, length and seed (hypothesis)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fieldbank import contract
from fieldbank.simulate.params import period_end


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(parties=st.integers(50, 400), months=st.integers(1, 8), seed=st.integers(0, 2**31 - 1),
       start_month=st.integers(1, 12))
def test_invariants_hold_for_any_small_economy(parties, months, seed, start_month, run_sim):
    with tempfile.TemporaryDirectory() as tmp:
        run = run_sim(Path(tmp), parties=parties, months=months, seed=seed, start=dt.date(2023, start_month, 1))
        con = duckdb.connect()
        for name in contract.TABLE_ORDER:
            con.execute(f"create view {name} as select * from read_parquet('{run.raw / name}/*.parquet')")
        end = period_end(run.params.start, months).isoformat()
        checks = {
            "orphan payer/payee": """select count(*) from payments where payer_id not in (select party_id from parties)
                                     or payee_id not in (select party_id from parties)""",
            "self payments": "select count(*) from payments where payer_id = payee_id",
            "amount < 1": "select count(*) from payments where amount_minor < 1",
            "invoice order": "select count(*) from invoices where due_at < issued_at or paid_at < issued_at",
            "after period": f"""select (select count(*) from payments where ts >= '{end}')
                                     + (select count(*) from invoices where coalesce(paid_at, issued_at) >= '{end}')
                                     + (select count(*) from invoices where due_at >= '{end}'::date + interval 60 day)
                                     + (select count(*) from bills where coalesce(paid_at, due_at) >= '{end}')
                                     + (select count(*) from loans where coalesce(closed_at, defaulted_at, opened_at) >= '{end}')""",
            "dpd vs default": "select count(*) from loans where (max_dpd >= 90) != (defaulted_at is not null)",
        }
        for rule, query in checks.items():
            assert con.execute(query).fetchone()[0] == 0, rule
        assert con.execute("select count(*) from parties").fetchone()[0] == parties
        for name in contract.TABLE_ORDER:
            for f in (run.raw / name).glob("*.parquet"):
                import pyarrow.parquet as pq

                assert pq.read_schema(f).equals(contract.TABLES[name].schema)
