"""Point in time: nothing at or after as_of can change a portrait.

We compute portraits, then add future events and edit the future of existing rows (payments
after D, invoices paid after D, bills due or paid after D, loans opened, defaulted or closed
after D, parties created after D), and prove every feature of every party unchanged.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from portrait_handmade import assert_same_portrait, hand_tables

from fieldbank.portrait import connect, execute_portrait, load_inputs
from fieldbank.portrait.testing import synthetic_tables, write_lake_table

AS_OFS = [dt.date(2025, 3, 1), dt.date(2025, 6, 1)]
DAY_US = 86_400_000_000


def _lake(root: Path, tables: dict[str, pa.Table]) -> Path:
    lake = root / "lake"
    for name, table in tables.items():
        write_lake_table(lake, name, table)
    return lake


def _rewrite(lake: Path, name: str, table: pa.Table) -> None:
    shutil.rmtree(lake / name)
    write_lake_table(lake, name, table)


def _ts_us(col: pa.ChunkedArray) -> np.ndarray:
    """Microseconds since epoch with nulls as int64 min."""
    return col.cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy()


def _to_ts(us: np.ndarray) -> pa.Array:
    """Back to timestamps; the int64-min marker becomes null again."""
    return pa.array(us, mask=us == np.iinfo(np.int64).min, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def edit_future(tables: dict[str, pa.Table], as_of: dt.date, seed: int) -> dict[str, pa.Table]:
    """Every change here is after `as_of`: new events, and later outcomes of existing rows."""
    rng = np.random.default_rng(seed)
    d = int(dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    out = dict(tables)

    p = tables["payments"]
    future = _ts_us(p["ts"]) >= d
    amounts = p["amount_minor"].to_numpy().copy()
    amounts[future] = amounts[future] * 3 + 1
    p = p.set_column(p.schema.get_field_index("amount_minor"), "amount_minor", pa.array(amounts))
    out["payments"] = p

    inv = tables["invoices"]
    issued, paid = _ts_us(inv["issued_at"]), _ts_us(inv["paid_at"])
    unknown_at_d = (paid == np.iinfo(np.int64).min) | (paid >= d)
    new_paid = np.where(unknown_at_d, np.maximum(issued, d) + rng.integers(0, 90, len(paid)) * DAY_US, paid)
    inv = inv.set_column(inv.schema.get_field_index("paid_at"), "paid_at", _to_ts(new_paid))
    amt = inv["amount_minor"].to_numpy().copy()
    amt[issued >= d] += 12345
    out["invoices"] = inv.set_column(inv.schema.get_field_index("amount_minor"), "amount_minor", pa.array(amt))

    b = tables["bills"]
    due, paid = _ts_us(b["due_at"]), _ts_us(b["paid_at"])
    unknown_at_d = (paid == np.iinfo(np.int64).min) | (paid >= d)
    new_paid = np.where(unknown_at_d, np.maximum(due, d) + rng.integers(0, 40, len(paid)) * DAY_US, paid)
    out["bills"] = b.set_column(b.schema.get_field_index("paid_at"), "paid_at", _to_ts(new_paid))

    ln = tables["loans"]
    opened, closed, defaulted = _ts_us(ln["opened_at"]), _ts_us(ln["closed_at"]), _ts_us(ln["defaulted_at"])
    nul = np.iinfo(np.int64).min
    open_at_d = (closed == nul) | (closed >= d)
    new_def = np.where(open_at_d & ((defaulted == nul) | (defaulted >= d)), np.maximum(opened, d) + 5 * DAY_US,
                       defaulted)
    new_closed = np.where(open_at_d, np.maximum(new_def, np.maximum(opened, d)) + 10 * DAY_US, closed)
    max_dpd = np.where(open_at_d, 150, ln["max_dpd"].to_numpy()).astype(np.int32)
    ln = ln.set_column(ln.schema.get_field_index("closed_at"), "closed_at", _to_ts(new_closed))
    ln = ln.set_column(ln.schema.get_field_index("defaulted_at"), "defaulted_at", _to_ts(new_def))
    ln = ln.set_column(ln.schema.get_field_index("max_dpd"), "max_dpd", pa.array(max_dpd))
    wo = pc.or_(ln["written_off"], pa.array(open_at_d))
    out["loans"] = ln.set_column(ln.schema.get_field_index("written_off"), "written_off", wo)
    return out


def future_events(tables: dict[str, pa.Table], as_of: dt.date, seed: int) -> dict[str, pa.Table]:
    """New rows, all at or after as_of 00:00:00 UTC (a new party, and new events of old parties)."""
    fut = synthetic_tables(20, 3000, as_of, 40, seed=seed)
    # New parties get fresh ids; their events also hit existing parties.
    existing = tables["parties"]["party_id"].to_pylist()
    mapping = {f"p{i:07d}": existing[i % len(existing)] for i in range(10)}  # half map onto old parties

    def remap(col: pa.ChunkedArray) -> pa.Array:
        return pa.array([mapping.get(v, "future-" + v) for v in col.to_pylist()])

    parties = fut["parties"].filter(pc.invert(pc.is_in(fut["parties"]["party_id"], pa.array(list(mapping)))))
    parties = parties.set_column(0, "party_id", remap(parties["party_id"]))
    d_us = int(dt.datetime(as_of.year, as_of.month, as_of.day, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000
    created = np.maximum(_ts_us(parties["created_at"]), d_us)
    parties = parties.set_column(4, "created_at", _to_ts(created))
    out = {"parties": parties}
    for name, cols in (("payments", ["payer_id", "payee_id"]), ("invoices", ["supplier_id", "buyer_id"]),
                       ("bills", ["party_id"])):
        t = fut[name]
        for c in cols:
            t = t.set_column(t.schema.get_field_index(c), c, remap(t[c]))
        out[name] = t
    loans = fut["loans"]
    keep = pc.greater_equal(loans["opened_at"], pa.scalar(created.min(), pa.int64()).cast(loans["opened_at"].type))
    loans = loans.filter(keep)
    out["loans"] = loans.set_column(1, "party_id", remap(loans["party_id"]))
    for name, t in out.items():  # ids must stay unique
        key = {"parties": "party_id", "payments": "txn_id", "invoices": "invoice_id", "bills": "bill_id",
               "loans": "loan_id"}[name]
        if name != "parties":
            out[name] = t.set_column(0, key, pc.binary_join_element_wise("future-", t[key], ""))
    return out


@pytest.fixture(scope="module")
def base_tables() -> dict[str, pa.Table]:
    hand = hand_tables()
    synth = synthetic_tables(150, 6000, dt.date(2024, 9, 1), 300, seed=11)
    return {name: pa.concat_tables([hand[name], synth[name]]) for name in hand}


@pytest.mark.parametrize(("as_of", "use_rollups"), [(AS_OFS[0], True), (AS_OFS[1], False)])
def test_future_changes_nothing(tmp_path: Path, base_tables: dict[str, pa.Table], as_of: dt.date,
                                use_rollups: bool) -> None:
    lake = _lake(tmp_path, base_tables)
    before = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=use_rollups), as_of)
    assert before.num_rows > 100

    edited = edit_future(base_tables, as_of, seed=3)
    # Every table's future really changed (the test would prove nothing otherwise) ...
    for name in ("payments", "invoices", "bills", "loans"):
        assert not edited[name].equals(base_tables[name]), name
    for name, table in edited.items():
        _rewrite(lake, name, table)
    added = future_events(base_tables, as_of, seed=5)
    assert all(t.num_rows > 0 for t in added.values())
    for name, table in added.items():
        write_lake_table(lake, name, table)
    after = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=use_rollups), as_of)
    # ... yet not a single value as of D moved.
    assert after.schema == before.schema
    assert_same_portrait(after, before, rel=1e-12)

