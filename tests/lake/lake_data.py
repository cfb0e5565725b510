"""A tiny hand-made valid dataset (all five tables) and helpers to write it as CSV/Parquet.

A uniquely named module (not conftest) so that `from lake_data import ...` cannot pick up
another test package's conftest."""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fieldbank import contract

NOW = datetime(2025, 1, 1, tzinfo=timezone.utc)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def parties_rows() -> list[dict]:
    return [
        dict(
            party_id="p1",
            kind="household",
            region_id="r1",
            sector="farming",
            created_at=ts("2023-01-03 08:00"),
            birth_year=1980,
            declared_income_minor=5_000_000,
            declared_assets_minor=None,
            phone_hash="h1",
            device_hash=None,
        ),
        dict(
            party_id="p2",
            kind="household",
            region_id="r1",
            sector="wage",
            created_at=ts("2023-01-20 09:30"),
            birth_year=1991,
            declared_income_minor=None,
            declared_assets_minor=100_000,
            phone_hash=None,
            device_hash="d2",
        ),
        dict(
            party_id="b1",
            kind="business",
            region_id="r1",
            sector="grocery",
            created_at=ts("2023-02-01 00:00"),
            birth_year=None,
            declared_income_minor=90_000_000,
            declared_assets_minor=None,
            phone_hash="h3",
            device_hash="d3",
        ),
        dict(
            party_id="b2",
            kind="business",
            region_id="r2",
            sector="wholesaler",
            created_at=ts("2023-03-15 12:00"),
            birth_year=1975,
            declared_income_minor=None,
            declared_assets_minor=None,
            phone_hash=None,
            device_hash=None,
        ),
        dict(
            party_id="b3",
            kind="business",
            region_id="r2",
            sector="agri_inputs",
            created_at=ts("2023-03-31 23:59:59"),
            birth_year=None,
            declared_income_minor=None,
            declared_assets_minor=None,
            phone_hash=None,
            device_hash=None,
        ),
    ]


def payments_rows() -> list[dict]:
    rows = []
    plan = [
        ("p1", "b1", 1250, "qr", "purchase", "food", "2024-01-05 10:00"),
        ("p1", "b3", 80_000, "transfer", "purchase", "agri_inputs", "2024-01-31 23:59:59"),
        ("p2", "b1", 420, "qr", "purchase", "food", "2024-02-01 00:00"),
        ("b1", "p2", 300_000, "payroll", "wage", None, "2024-02-28 18:00"),
        ("b1", "b2", 1_500_000, "transfer", "purchase", "wholesale", "2024-03-02 11:11"),
        ("b2", "p1", 2_000_000, "transfer", "harvest_sale", None, "2024-03-20 07:00"),
        ("b1", "p1", 1250, "qr", "refund", "food", "2024-03-21 09:00"),
        ("p2", "b1", 999, "online", "purchase", "leisure", "2024-04-10 20:00"),
    ]
    for i, (payer, payee, amount, channel, kind, category, when) in enumerate(plan, start=1):
        rows.append(
            dict(
                txn_id=f"t{i}",
                ts=ts(when),
                payer_id=payer,
                payee_id=payee,
                amount_minor=amount,
                channel=channel,
                kind=kind,
                category=category,
            )
        )
    return rows


def invoices_rows() -> list[dict]:
    return [
        dict(
            invoice_id="i1",
            supplier_id="b2",
            buyer_id="b1",
            issued_at=ts("2024-01-10 00:00"),
            due_at=ts("2024-02-10 00:00"),
            amount_minor=1_500_000,
            paid_at=ts("2024-03-02 11:11"),
        ),
        dict(
            invoice_id="i2",
            supplier_id="b3",
            buyer_id="b1",
            issued_at=ts("2024-02-01 00:00"),
            due_at=ts("2024-02-01 00:00"),
            amount_minor=70_000,
            paid_at=None,
        ),
        dict(
            invoice_id="i3",
            supplier_id="b2",
            buyer_id="b3",
            issued_at=ts("2024-03-05 00:00"),
            due_at=ts("2024-04-05 00:00"),
            amount_minor=250_000,
            paid_at=ts("2024-03-05 00:00"),
        ),
    ]


def bills_rows() -> list[dict]:
    return [
        dict(
            bill_id="e1",
            party_id="p1",
            biller_kind="electricity",
            due_at=ts("2024-01-25 00:00"),
            amount_minor=3_500,
            paid_at=ts("2024-01-20 10:00"),
        ),
        dict(
            bill_id="w1",
            party_id="p2",
            biller_kind="water",
            due_at=ts("2024-02-25 00:00"),
            amount_minor=1_200,
            paid_at=None,
        ),
        dict(
            bill_id="m1",
            party_id="b1",
            biller_kind="telecom",
            due_at=ts("2024-03-25 00:00"),
            amount_minor=5_000,
            paid_at=ts("2024-04-02 10:00"),
        ),
    ]


def loans_rows() -> list[dict]:
    return [
        dict(
            loan_id="l1",
            party_id="p1",
            lender="coop",
            opened_at=ts("2023-06-01 00:00"),
            principal_minor=1_000_000,
            term_days=180,
            closed_at=ts("2023-11-28 00:00"),
            max_dpd=3,
            defaulted_at=None,
            written_off=False,
        ),
        dict(
            loan_id="l2",
            party_id="b2",
            lender="bank",
            opened_at=ts("2023-09-01 00:00"),
            principal_minor=20_000_000,
            term_days=365,
            closed_at=None,
            max_dpd=120,
            defaulted_at=ts("2024-03-01 00:00"),
            written_off=True,
        ),
    ]


ROWS = {
    "parties": parties_rows,
    "payments": payments_rows,
    "invoices": invoices_rows,
    "bills": bills_rows,
    "loans": loans_rows,
}


def table_of(name: str, rows: list[dict] | None = None) -> pa.Table:
    rows = ROWS[name]() if rows is None else rows
    return pa.Table.from_pylist(rows, schema=contract.TABLES[name].schema)


def text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Rows as CSV text; values may be any object (str() is written as is)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns if columns is not None else list(rows[0].keys())
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in rows:
            w.writerow([text(r.get(c)) for c in columns])
    return path


def write_parquet(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def write_valid_raw(raw: Path, fmt: str = "parquet") -> Path:
    """The whole valid dataset as raw/<table>/part-00000.<fmt> (what the simulator writes)."""
    for name in contract.TABLE_ORDER:
        if fmt == "parquet":
            write_parquet(raw / name / "part-00000.parquet", table_of(name))
        else:
            write_csv(
                raw / name / "part-00000.csv", ROWS[name](), contract.TABLES[name].column_names
            )
    return raw
