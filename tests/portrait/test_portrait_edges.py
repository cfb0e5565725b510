"""Time-zone edges: D means 00:00:00 UTC, whatever zone an event was recorded in."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
from portrait_handmade import AS_OF, rows_to_table, write_lake_table

from fieldbank.portrait import connect, execute_portrait, load_inputs

BEIJING = dt.timezone(dt.timedelta(hours=8))


def test_last_second_before_as_of_is_in_and_midnight_is_out(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    created = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    parties = [{"party_id": p, "kind": k, "region_id": "R", "sector": s, "created_at": created}
               for p, k, s in (("B", "business", "grocery"), ("C", "household", "wage"))]
    pay = [
        # 07:59:59 in Beijing on D is 23:59:59 UTC the day before: in.
        ("in-1", dt.datetime(2025, 6, 1, 7, 59, 59, tzinfo=BEIJING), 100),
        ("in-2", dt.datetime(2025, 5, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc), 20),
        # 08:00:00 in Beijing on D is 00:00:00 UTC of D: out; so is midnight UTC itself.
        ("out-1", dt.datetime(2025, 6, 1, 8, 0, 0, tzinfo=BEIJING), 4000),
        ("out-2", dt.datetime(2025, 6, 1, 0, 0, 0, tzinfo=dt.timezone.utc), 50000),
    ]
    payments = [{"txn_id": t, "ts": when, "payer_id": "C", "payee_id": "B", "amount_minor": amt,
                 "channel": "qr", "kind": "purchase", "category": "food"} for t, when, amt in pay]
    tables = {"parties": rows_to_table("parties", parties), "payments": rows_to_table("payments", payments)}
    for name in ("invoices", "bills", "loans"):
        tables[name] = rows_to_table(name, [])
    assert tables["payments"].schema.field("ts").type == pa.timestamp("us", tz="UTC")
    for name, table in tables.items():
        write_lake_table(lake, name, table)
    for use_rollups in (True, False):
        rows = {r["party_id"]: r for r in execute_portrait(
            load_inputs(connect("duckdb"), lake, use_rollups=use_rollups), AS_OF).to_pylist()}
        assert rows["B"]["biz_revenue_minor_30d"] == 120
        assert rows["B"]["biz_active_days_30d"] == 1  # both are on 2025-05-31 UTC
        assert rows["C"]["hh_spend_minor_30d"] == 120
