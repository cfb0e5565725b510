"""A tiny hand-made lake (every value below is checked by hand in test_portrait_families.py)."""

from __future__ import annotations

import datetime as dt
import numpy as np
import pyarrow as pa

from fieldbank.contract import TABLES
from fieldbank.portrait.testing import write_lake_table

AS_OF = dt.date(2025, 6, 1)
UTC = dt.timezone.utc

__all__ = ["AS_OF", "assert_same_portrait", "hand_tables", "rows_to_table", "ts", "write_lake_table"]


def ts(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def rows_to_table(table_name: str, rows: list[dict]) -> pa.Table:
    schema = TABLES[table_name].schema
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


def _party(pid: str, kind: str, region: str, created: dt.datetime, sector: str | None = None) -> dict:
    return {
        "party_id": pid, "kind": kind, "region_id": region,
        "sector": sector or ("grocery" if kind == "business" else "wage"),
        "created_at": created, "birth_year": 1980, "declared_income_minor": 1_000_000,
        "declared_assets_minor": 5_000_000,
    }


def hand_tables() -> dict[str, pa.Table]:
    """The hand-made economy; AS_OF = 2025-06-01. See test_families.py for the expectations."""
    c = ts(2024, 1, 1)
    parties = [
        _party("M1", "business", "R1", c),
        _party("H1", "household", "R1", c),
        _party("H2", "household", "R1", c),
        _party("S1", "business", "R2", c, "wholesaler"),
        _party("E1", "household", "R2", c),  # no events at all
        _party("F1", "household", "R2", c),  # events only after AS_OF
        _party("X1", "household", "R2", c),  # a single event
        _party("N1", "household", "R2", ts(2025, 7, 1)),  # created after AS_OF: no row
    ]
    pay = [
        ("t1", ts(2025, 5, 31, 23, 59, 59), "H1", "M1", 1000, "purchase", "food"),  # last second before D
        ("t2", ts(2025, 5, 20, 10), "H1", "M1", 2000, "purchase", "durables"),
        ("t3", ts(2025, 4, 1, 12), "H2", "M1", 3000, "purchase", "food"),
        ("t4", ts(2025, 1, 15, 9), "H1", "M1", 4000, "purchase", "leisure"),
        ("t5", ts(2025, 5, 10, 8), "M1", "H2", 500, "refund", None),
        ("t6", ts(2025, 5, 25, 17), "M1", "H1", 10000, "wage", None),
        ("t7", ts(2025, 6, 1, 0, 0, 0), "H1", "M1", 9999, "purchase", "food"),  # at D: excluded
        ("t8", ts(2025, 6, 15), "F1", "M1", 7777, "purchase", "food"),  # after D
    ]
    payments = [
        {"txn_id": t, "ts": when, "payer_id": payer, "payee_id": payee, "amount_minor": amt, "channel": "qr",
         "kind": kind, "category": cat}
        for t, when, payer, payee, amt, kind, cat in pay
    ]
    invoices = [
        {"invoice_id": "I1", "supplier_id": "S1", "buyer_id": "M1", "issued_at": ts(2025, 3, 1),
         "due_at": ts(2025, 3, 31), "amount_minor": 50000, "paid_at": ts(2025, 4, 10)},
        {"invoice_id": "I2", "supplier_id": "S1", "buyer_id": "M1", "issued_at": ts(2025, 4, 15),
         "due_at": ts(2025, 5, 15), "amount_minor": 30000, "paid_at": ts(2025, 6, 10)},  # paid after D
        {"invoice_id": "I3", "supplier_id": "S1", "buyer_id": "M1", "issued_at": ts(2025, 5, 20),
         "due_at": ts(2025, 6, 19), "amount_minor": 20000, "paid_at": None},  # not yet due at D
        {"invoice_id": "I4", "supplier_id": "S1", "buyer_id": "M1", "issued_at": ts(2025, 6, 5),
         "due_at": ts(2025, 7, 5), "amount_minor": 99000, "paid_at": None},  # issued after D
    ]
    bills = [
        {"bill_id": "B1", "party_id": "H1", "biller_kind": "electricity", "due_at": ts(2025, 5, 10),
         "amount_minor": 3000, "paid_at": ts(2025, 5, 9)},
        {"bill_id": "B2", "party_id": "H1", "biller_kind": "water", "due_at": ts(2025, 4, 10),
         "amount_minor": 2000, "paid_at": ts(2025, 4, 15)},
        {"bill_id": "B3", "party_id": "H1", "biller_kind": "telecom", "due_at": ts(2025, 5, 25),
         "amount_minor": 1000, "paid_at": ts(2025, 6, 3)},  # paid after D: unpaid as of D
        {"bill_id": "B4", "party_id": "H1", "biller_kind": "telecom", "due_at": ts(2025, 6, 10),
         "amount_minor": 1000, "paid_at": None},  # due after D
        {"bill_id": "B5", "party_id": "X1", "biller_kind": "water", "due_at": ts(2025, 5, 31, 23, 59, 59),
         "amount_minor": 700, "paid_at": None},
        {"bill_id": "B6", "party_id": "F1", "biller_kind": "water", "due_at": ts(2025, 6, 2),
         "amount_minor": 700, "paid_at": None},
    ]
    loans = [
        {"loan_id": "L1", "party_id": "S1", "lender": "bank_a", "opened_at": ts(2024, 6, 1),
         "principal_minor": 100000, "term_days": 180, "closed_at": ts(2025, 1, 1), "max_dpd": 120,
         "defaulted_at": ts(2024, 10, 1), "written_off": True},
        {"loan_id": "L2", "party_id": "H1", "lender": "mfi_b", "opened_at": ts(2025, 1, 1),
         "principal_minor": 50000, "term_days": 365, "closed_at": ts(2025, 7, 1), "max_dpd": 95,
         "defaulted_at": ts(2025, 6, 20), "written_off": False},  # its default is after D
        {"loan_id": "L3", "party_id": "H1", "lender": "bank_a", "opened_at": ts(2024, 1, 1),
         "principal_minor": 20000, "term_days": 180, "closed_at": ts(2024, 7, 1), "max_dpd": 12,
         "defaulted_at": None, "written_off": False},
        {"loan_id": "L4", "party_id": "F1", "lender": "bank_a", "opened_at": ts(2025, 6, 2),
         "principal_minor": 20000, "term_days": 180, "closed_at": None, "max_dpd": 0,
         "defaulted_at": None, "written_off": False},
    ]
    return {
        "parties": rows_to_table("parties", parties),
        "payments": rows_to_table("payments", payments),
        "invoices": rows_to_table("invoices", invoices),
        "bills": rows_to_table("bills", bills),
        "loans": rows_to_table("loans", loans),
    }


def assert_same_portrait(got: pa.Table, expected: pa.Table, rel: float) -> None:
    """Same rows and columns; integers and strings exact, floats within `rel` (float sums
    depend on the order an engine adds them in), nulls in the same places."""
    assert got.schema == expected.schema
    assert got["party_id"].equals(expected["party_id"])
    for name in expected.column_names:
        g, e = got[name], expected[name]
        if not pa.types.is_floating(e.type):
            assert g.equals(e), f"{name}: values differ"
            continue
        assert g.is_null().equals(e.is_null()), f"{name}: nulls differ"
        gv = g.drop_null().to_numpy()
        ev = e.drop_null().to_numpy()
        bad = ~np.isclose(gv, ev, rtol=rel, atol=0.0)
        assert not bad.any(), f"{name}: {int(bad.sum())} values differ, e.g. {gv[bad][:3]} vs {ev[bad][:3]}"
