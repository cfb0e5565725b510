"""A seeded synthetic lake written straight with numpy/pyarrow, for tests and benchmarks.

Not the simulator (fieldbank.simulate owns the realistic economy): this is the fastest way to
get contract-shaped Parquet of any size with the same seed -> the same bytes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank.contract import BILLER_KINDS, CATEGORIES, HOUSEHOLD_SECTORS, BUSINESS_SECTORS, TABLES

US_PER_DAY = 86_400_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def write_lake_table(lake_dir: Path, table_name: str, table: pa.Table, file_tag: str | None = None) -> list[Path]:
    """Write rows of a contract table into the lake layout `<table>/month=YYYY-MM/<file>.parquet`.

    Each call adds new files (never overwrites), like an ingest batch. The table is cast to
    the contract schema first, so a wrong column fails here, loudly.
    """
    spec = TABLES[table_name]
    table = table.select(spec.schema.names).cast(spec.schema)
    months = pc.strftime(table.column(spec.time_column), format="%Y-%m")
    tag = file_tag or uuid.uuid4().hex[:12]
    out: list[Path] = []
    for month in sorted(pc.unique(months).to_pylist()):
        part = table.filter(pc.equal(months, month))
        d = Path(lake_dir) / table_name / f"month={month}"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"part-{tag}.parquet"
        assert not path.exists(), f"{path} exists"
        pq.write_table(part, path)
        out.append(path)
    return out


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype("int64"), type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _ids(prefix: str, first: int, n: int, width: int) -> pa.Array:
    """f"{prefix}{i:0{width}d}" for i in first..first+n-1, vectorised (100M ids in seconds)."""
    digits = pc.utf8_lpad(pa.array(np.arange(first, first + n, dtype=np.int64)).cast(pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _to_us(day: dt.date) -> int:
    return int((dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc) - EPOCH).total_seconds()) * 1_000_000


def synthetic_tables(
    parties_n: int,
    payments_n: int,
    start: dt.date,
    days: int,
    seed: int,
    regions_n: int = 20,
) -> dict[str, pa.Table]:
    """Contract tables for `parties_n` parties and `payments_n` payments over `days` days."""
    assert parties_n >= 10 and payments_n >= 0 and 1 <= days <= 3660
    rng = np.random.default_rng(seed)
    t0 = _to_us(start)
    span = days * US_PER_DAY
    parties, ids, biz, hh = _synthetic_parties(rng, parties_n, t0, span, regions_n)
    payments = _synthetic_payments(rng, ids, biz, hh, payments_n, t0, span, first_txn=0)
    out = {"parties": parties, "payments": payments,
           **_synthetic_obligations(rng, ids, biz, hh, parties_n, payments_n, t0, span, days)}
    return {name: t.select(TABLES[name].schema.names).cast(TABLES[name].schema) for name, t in out.items()}


def _synthetic_parties(
    rng: np.random.Generator, parties_n: int, t0: int, span: int, regions_n: int
) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray]:
    """Parties, plus their ids and the indexes of businesses and households."""
    ids = np.array([f"p{i:07d}" for i in range(parties_n)], dtype=object)
    is_biz = rng.random(parties_n) < 0.3
    is_biz[:2] = [True, False]
    biz = np.flatnonzero(is_biz)
    hh = np.flatnonzero(~is_biz)
    created = t0 - rng.integers(0, 2 * 365, parties_n) * US_PER_DAY + rng.integers(0, span, parties_n) // 4
    parties = pa.table(
        {
            "party_id": ids,
            "kind": np.where(is_biz, "business", "household"),
            "region_id": np.array([f"r{r:02d}" for r in rng.integers(0, regions_n, parties_n)], dtype=object),
            "sector": np.where(
                is_biz,
                np.array(BUSINESS_SECTORS, dtype=object)[rng.integers(0, len(BUSINESS_SECTORS), parties_n)],
                np.array(HOUSEHOLD_SECTORS, dtype=object)[rng.integers(0, len(HOUSEHOLD_SECTORS), parties_n)],
            ),
            "created_at": _ts(created),
            "birth_year": pa.array(
                np.where(rng.random(parties_n) < 0.9, rng.integers(1950, 2004, parties_n), -1), mask=None
            ),
            "declared_income_minor": rng.integers(100_000, 50_000_000, parties_n),
            "declared_assets_minor": rng.integers(0, 500_000_000, parties_n),
            "phone_hash": np.array([f"ph{i}" for i in range(parties_n)], dtype=object),
            "device_hash": np.array([f"dv{i}" for i in range(parties_n)], dtype=object),
        }
    )
    by = parties.column("birth_year").to_numpy()
    parties = parties.set_column(5, "birth_year", pa.array(by, mask=by < 0, type=pa.int32()))

    return parties, ids, biz, hh


def _synthetic_payments(
    rng: np.random.Generator, ids: np.ndarray, biz: np.ndarray, hh: np.ndarray, n: int, t0: int, span: int,
    first_txn: int,
) -> pa.Table:
    """`n` payments with txn ids t<first_txn>...; any time in [t0, t0 + span)."""
    # Payments: households buy from businesses (skewed: some merchants are big, customers repeat).
    kind_draw = rng.random(n)
    kind = np.select(
        [kind_draw < 0.72, kind_draw < 0.82, kind_draw < 0.87, kind_draw < 0.96],
        ["purchase", "wage", "harvest_sale", "transfer"],
        "refund",
    ).astype(object)
    merchant = biz[np.minimum((rng.pareto(1.2, n) * len(biz) / 20).astype(np.int64), len(biz) - 1)]
    customer = hh[rng.integers(0, len(hh), n)]
    payer = np.where(np.isin(kind, ["purchase", "transfer"]), customer, merchant)
    payee = np.where(np.isin(kind, ["purchase"]), merchant, customer)
    transfer = kind == "transfer"
    payee = np.where(transfer, hh[rng.integers(0, len(hh), n)], payee)
    cat = np.array(CATEGORIES, dtype=object)[rng.integers(0, len(CATEGORIES), n)]
    ts = t0 + rng.integers(0, span, n)
    amount = np.maximum(1, rng.lognormal(8, 1.2, n).astype(np.int64))
    channel = np.array(["qr", "online", "transfer", "payroll"], dtype=object)[rng.integers(0, 4, n)]
    payments = pa.table(
        {
            "txn_id": _ids("t", first_txn, n, 9),
            "ts": _ts(ts),
            "payer_id": ids[payer],
            "payee_id": ids[payee],
            "amount_minor": amount,
            "channel": channel,
            "kind": kind,
            "category": pa.array(cat, mask=kind != "purchase"),
        }
    )

    return payments


def _synthetic_obligations(
    rng: np.random.Generator, ids: np.ndarray, biz: np.ndarray, hh: np.ndarray, parties_n: int, n: int,
    t0: int, span: int, days: int,
) -> dict[str, pa.Table]:
    """Invoices (sized by the payments count `n`), bills and loans."""
    # Invoices between businesses: 30-day terms, most paid around the due date, some never.
    m = max(10, n // 40)
    sup = biz[rng.integers(0, len(biz), m)]
    buy = biz[rng.integers(0, len(biz), m)]
    issued = t0 + rng.integers(0, span, m)
    due = issued + 30 * US_PER_DAY
    paid = due + (rng.normal(0, 12, m) * US_PER_DAY).astype(np.int64)
    paid = np.maximum(paid, issued)
    invoices = pa.table(
        {
            "invoice_id": _ids("i", 0, m, 8),
            "supplier_id": ids[sup],
            "buyer_id": ids[buy],
            "issued_at": _ts(issued),
            "due_at": _ts(due),
            "amount_minor": np.maximum(1, rng.lognormal(11, 1.0, m).astype(np.int64)),
            "paid_at": pa.array(paid, mask=rng.random(m) < 0.08).cast(pa.timestamp("us", tz="UTC")),
        }
    )

    # Bills: monthly for each household (one biller kind each).
    months = max(1, days // 30)
    bill_party = np.repeat(hh, months)
    k = len(bill_party)
    bill_due = t0 + np.tile(np.arange(months), len(hh)) * 30 * US_PER_DAY + rng.integers(0, 30 * US_PER_DAY, k)
    bill_paid = bill_due + (rng.exponential(3, k) * US_PER_DAY).astype(np.int64) - 2 * US_PER_DAY
    bills = pa.table(
        {
            "bill_id": _ids("b", 0, k, 9),
            "party_id": ids[bill_party],
            "biller_kind": np.array(BILLER_KINDS, dtype=object)[rng.integers(0, len(BILLER_KINDS), k)],
            "due_at": _ts(bill_due),
            "amount_minor": rng.integers(1_000, 50_000, k),
            "paid_at": pa.array(bill_paid, mask=rng.random(k) < 0.05).cast(pa.timestamp("us", tz="UTC")),
        }
    )

    # Loans: about one in three parties has one; some default, most close.
    q = max(5, parties_n // 3)
    lp = rng.integers(0, parties_n, q)
    opened = t0 - 365 * US_PER_DAY + rng.integers(0, span + 365 * US_PER_DAY, q)
    term = rng.integers(90, 366, q).astype(np.int32)
    defaults = rng.random(q) < 0.1
    defaulted = opened + (90 + rng.integers(0, 200, q)) * US_PER_DAY
    closed = opened + term.astype(np.int64) * US_PER_DAY + rng.integers(0, 30, q) * US_PER_DAY
    closed = np.where(defaults, defaulted + 60 * US_PER_DAY, closed)
    max_dpd = np.where(defaults, 90 + rng.integers(0, 200, q), rng.integers(0, 60, q)).astype(np.int32)
    loans = pa.table(
        {
            "loan_id": _ids("l", 0, q, 8),
            "party_id": ids[lp],
            "lender": np.array(["bank_a", "mfi_b", "coop_c"], dtype=object)[rng.integers(0, 3, q)],
            "opened_at": _ts(opened),
            "principal_minor": rng.integers(100_000, 10_000_000, q),
            "term_days": term,
            "closed_at": pa.array(closed, mask=rng.random(q) < 0.2).cast(pa.timestamp("us", tz="UTC")),
            "max_dpd": max_dpd,
            "defaulted_at": pa.array(defaulted, mask=~defaults).cast(pa.timestamp("us", tz="UTC")),
            "written_off": defaults & (rng.random(q) < 0.5),
        }
    )
    return {"invoices": invoices, "bills": bills, "loans": loans}


def write_synthetic_lake(lake_dir: Path, tables: dict[str, pa.Table]) -> None:
    for name, table in tables.items():
        write_lake_table(lake_dir, name, table, file_tag="0")


PAYMENTS_CHUNK_ROWS = 2_000_000  # rows generated and written at a time by the streaming writer


def write_synthetic_lake_streaming(
    lake_dir: Path,
    parties_n: int,
    payments_n: int,
    start: dt.date,
    days: int,
    seed: int,
    chunk_rows: int = PAYMENTS_CHUNK_ROWS,
    on_chunk: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """A synthetic lake of any size in bounded memory: payments are generated `chunk_rows` at
    a time (chunk k from the seed sequence (seed, k)) and appended as row groups to one open
    Parquet file per month, `payments/month=YYYY-MM/part-0.parquet`. Same distributions as
    `synthetic_tables`, not the same rows. Returns row counts per table; `on_chunk(rows)` is
    called after each payment chunk (progress bars)."""
    assert parties_n >= 10 and payments_n >= 0 and 1 <= days <= 3660 and chunk_rows >= 1
    rng = np.random.default_rng(seed)
    t0 = _to_us(start)
    span = days * US_PER_DAY
    parties, ids, biz, hh = _synthetic_parties(rng, parties_n, t0, span, 20)
    counts = {"parties": parties.num_rows}
    write_lake_table(lake_dir, "parties", parties, file_tag="0")
    for name, table in _synthetic_obligations(rng, ids, biz, hh, parties_n, payments_n, t0, span, days).items():
        write_lake_table(lake_dir, name, table, file_tag="0")
        counts[name] = table.num_rows
    del parties
    schema = TABLES["payments"].schema
    writers: dict[str, pq.ParquetWriter] = {}
    try:
        for k, first in enumerate(range(0, payments_n, chunk_rows)):
            n = min(chunk_rows, payments_n - first)
            chunk = _synthetic_payments(np.random.default_rng([seed, k]), ids, biz, hh, n, t0, span, first)
            chunk = chunk.select(schema.names).cast(schema)
            months = pc.strftime(chunk["ts"], format="%Y-%m")
            for month in sorted(pc.unique(months).to_pylist()):
                if month not in writers:
                    d = Path(lake_dir) / "payments" / f"month={month}"
                    d.mkdir(parents=True, exist_ok=True)
                    path = d / "part-0.parquet"
                    assert not path.exists(), f"{path} exists"
                    writers[month] = pq.ParquetWriter(path, schema)
                writers[month].write_table(chunk.filter(pc.equal(months, month)))
            if on_chunk is not None:
                on_chunk(n)
    finally:
        for w in writers.values():
            w.close()
    counts["payments"] = payments_n
    return counts
