"""Incremental portrait state: the latest portrait from running totals equals a full recompute
from the raw payments (counts and strings exactly, floats within 1e-9 relative; PageRank is
the same arithmetic, so the same tolerance), day after day, after a multi-day jump, after a
late-arriving file (rebuild) and with future events in the lake (point in time)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from portrait_handmade import assert_same_portrait

from fieldbank.portrait import connect, execute_portrait, load_inputs
from fieldbank.portrait.state import _stale_reason, latest_portrait, state_path
from fieldbank.portrait.testing import synthetic_tables, write_lake_table

START = dt.date(2024, 3, 1)
DAYS = 400  # more than a year, so days leave every window, the 365-day one included
FIRST_AS_OF = START + dt.timedelta(days=380)
TY = pa.timestamp("us", tz="UTC")


def _ts(day: dt.date) -> pa.Scalar:
    return pa.scalar(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc), TY)


def _between(t: pa.Table, lo: dt.date | None, hi: dt.date | None) -> pa.Table:
    if lo is not None:
        t = t.filter(pc.greater_equal(t["ts"], _ts(lo)))
    if hi is not None:
        t = t.filter(pc.less(t["ts"], _ts(hi)))
    return t


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return synthetic_tables(150, 30_000, START, DAYS, seed=5)


def _lake(tmp_path: Path, tables: dict[str, pa.Table]) -> tuple[Path, pa.Table]:
    """The lake with payments before FIRST_AS_OF; returns the later payments (held back)."""
    lake = tmp_path / "lake"
    for name, table in tables.items():
        if name != "payments":
            write_lake_table(lake, name, table, file_tag="0")
    write_lake_table(lake, "payments", _between(tables["payments"], None, FIRST_AS_OF), file_tag="0")
    return lake, _between(tables["payments"], FIRST_AS_OF, None)


def _full(lake: Path, as_of: dt.date) -> pa.Table:
    """The full recompute, independent of the state and of the persisted rollups."""
    return execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=False), as_of)


def test_new_days_advance_the_state_and_equal_a_full_recompute(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    lake, later = _lake(tmp_path, tables)
    got, update = latest_portrait(lake, FIRST_AS_OF)
    assert update.action == "built" and update.reason == "no state"
    assert state_path(lake).exists()
    assert_same_portrait(got, _full(lake, FIRST_AS_OF), rel=1e-9)

    day = FIRST_AS_OF
    for _ in range(3):  # one new day at a time, each in its own file, like a daily ingest
        write_lake_table(lake, "payments", _between(later, day, day + dt.timedelta(days=1)), file_tag=f"d{day}")
        day += dt.timedelta(days=1)
        got, update = latest_portrait(lake, day)
        assert (update.action, update.days, update.from_as_of) == ("advanced", 1, day - dt.timedelta(days=1))
        assert update.bills.endswith("parties recomputed"), update.bills  # bills due, late, paid that day
        expected = _full(lake, day)
        assert got.num_rows == expected.num_rows > 100
        assert_same_portrait(got, expected, rel=1e-9)

    # A day without payments (nothing ingested for it): the windows still slide.
    day += dt.timedelta(days=1)
    got, update = latest_portrait(lake, day)
    assert (update.action, update.days) == ("advanced", 1)
    assert_same_portrait(got, _full(lake, day), rel=1e-9)
    later = _between(later, day, None)

    # Several days at once, and the same date again (nothing to do).
    write_lake_table(lake, "payments", _between(later, day, day + dt.timedelta(days=5)), file_tag="d5")
    got, update = latest_portrait(lake, day + dt.timedelta(days=5))
    assert (update.action, update.days) == ("advanced", 5)
    assert_same_portrait(got, _full(lake, day + dt.timedelta(days=5)), rel=1e-9)
    again, update = latest_portrait(lake, day + dt.timedelta(days=5))
    assert update.action == "current"
    assert_same_portrait(again, got, rel=1e-12)  # float sums may add in another order


def test_future_events_are_not_in_the_state(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    """Payments on and after D sit in the lake (and the rollups); the state never takes them."""
    lake, later = _lake(tmp_path, tables)
    write_lake_table(lake, "payments", later, file_tag="future")  # every later day, in one file
    first, _ = latest_portrait(lake, FIRST_AS_OF)
    assert_same_portrait(first, _full(lake, FIRST_AS_OF), rel=1e-9)
    nxt, update = latest_portrait(lake, FIRST_AS_OF + dt.timedelta(days=2))
    assert update.action == "advanced"
    assert_same_portrait(nxt, _full(lake, FIRST_AS_OF + dt.timedelta(days=2)), rel=1e-9)


def test_late_or_changed_history_rebuilds(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    lake, later = _lake(tmp_path, tables)
    latest_portrait(lake, FIRST_AS_OF)
    # A late file: events of days already in the state (a copy of 20 payments from 10 days back).
    old = _between(tables["payments"], FIRST_AS_OF - dt.timedelta(days=10), FIRST_AS_OF - dt.timedelta(days=9))
    late = old.slice(0, 20).set_column(0, "txn_id", pc.binary_join_element_wise(old["txn_id"].slice(0, 20), "L", ""))
    write_lake_table(lake, "payments", late, file_tag="late")
    got, update = latest_portrait(lake, FIRST_AS_OF + dt.timedelta(days=1))
    assert update.action == "built" and "events before" in update.reason
    assert_same_portrait(got, _full(lake, FIRST_AS_OF + dt.timedelta(days=1)), rel=1e-9)


def test_stale_reasons() -> None:
    files = {"a.parquet": {"size": 1, "mtime_ns": 2, "first_day": "2025-01-01", "last_day": "2025-01-31"}}
    from fieldbank.portrait.state import definitions_fingerprint

    meta = {"as_of": "2025-02-01", "fingerprint": definitions_fingerprint(), "files": files}
    d = dt.date(2025, 2, 2)
    assert _stale_reason(None, files, d) == "no state"
    assert _stale_reason(meta, files, d) is None
    assert "later than" in _stale_reason(meta, files, dt.date(2025, 1, 31))
    assert "days old" in _stale_reason(meta, files, dt.date(2025, 4, 1))
    assert "changed or was removed" in _stale_reason(meta, {}, d)
    assert "changed" in _stale_reason(meta, {"a.parquet": {**files["a.parquet"], "size": 9}}, d)
    new_late = {**files, "b.parquet": {"size": 1, "mtime_ns": 1, "first_day": "2025-01-20", "last_day": "2025-02-01"}}
    assert "events before" in _stale_reason(meta, new_late, d)
    new_ok = {**files, "b.parquet": {"size": 1, "mtime_ns": 1, "first_day": "2025-02-01", "last_day": "2025-02-01"}}
    assert _stale_reason(meta, new_ok, d) is None
    assert "definitions" in _stale_reason({**meta, "fingerprint": "x"}, files, d)


def _rewrite(lake: Path, name: str, table: pa.Table, tag: str) -> None:
    """Replace a lake table's files (what a snapshot publish or a correction does)."""
    shutil.rmtree(lake / name)
    write_lake_table(lake, name, table, file_tag=tag)


def _set(table: pa.Table, column: str, rows: list[int], value: pa.Scalar) -> pa.Table:
    col = table[column].combine_chunks()
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[rows] = True
    return table.set_column(table.schema.get_field_index(column), column,
                            pc.if_else(pa.array(mask), pa.scalar(value.as_py(), col.type), col))


def test_edits_after_the_fact_equal_a_full_recompute(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    """Invoices, bills and loans change after the fact: a bill or an invoice is paid late, a
    loan defaults, a bill arrives late. The state's bills partials are recomputed for the
    parties concerned (a new file) or rebuilt (a changed file); invoices and loans are read as
    of D. Every time the portrait equals a full recompute."""
    lake, later = _lake(tmp_path, tables)
    day = FIRST_AS_OF
    latest_portrait(lake, day)
    bills_t, invoices, loans = tables["bills"], tables["invoices"], tables["loans"]
    d_ts = _ts(day)

    # Bills unpaid as of D (never paid, or paid later) are paid yesterday, late; another
    # bill's amount is corrected: the bills file changes -> the bills partials are rebuilt.
    unpaid = np.flatnonzero(pc.and_(pc.less(bills_t["due_at"], d_ts),
                                    pc.or_(pc.is_null(bills_t["paid_at"]),
                                           pc.greater_equal(bills_t["paid_at"], d_ts)).fill_null(True)).to_numpy(
        zero_copy_only=False))
    assert len(unpaid) > 5
    bills_t = _set(bills_t, "paid_at", list(unpaid[:5]), _ts(day - dt.timedelta(days=1)))
    bills_t = _set(bills_t, "amount_minor", [0], pa.scalar(123_456, pa.int64()))
    _rewrite(lake, "bills", bills_t, "edit1")
    # An invoice unpaid as of D is paid late (yesterday); an open loan defaults (yesterday).
    inv_unpaid = np.flatnonzero(pc.and_(pc.less(invoices["due_at"], d_ts),
                                        pc.is_null(invoices["paid_at"])).to_numpy(zero_copy_only=False))
    invoices = _set(invoices, "paid_at", list(inv_unpaid[:3]), _ts(day - dt.timedelta(days=1)))
    _rewrite(lake, "invoices", invoices, "edit1")
    open_loans = np.flatnonzero(pc.and_(pc.less(loans["opened_at"], d_ts),
                                        pc.is_null(loans["defaulted_at"])).to_numpy(zero_copy_only=False))
    loans = _set(loans, "defaulted_at", list(open_loans[:3]), _ts(day - dt.timedelta(days=1)))
    _rewrite(lake, "loans", loans, "edit1")
    write_lake_table(lake, "payments", _between(later, day, day + dt.timedelta(days=1)), file_tag="d1")
    day += dt.timedelta(days=1)
    got, update = latest_portrait(lake, day)
    assert update.action == "advanced" and update.bills == "built: a bills file changed or was removed"
    assert_same_portrait(got, _full(lake, day), rel=1e-9)

    # Late-arriving bills in a new file (some due long ago and unpaid, some due tomorrow):
    # only their parties are recomputed.
    new = bills_t.slice(0, 4)
    new = new.set_column(0, "bill_id", pc.binary_join_element_wise(new["bill_id"], "late", ""))
    new = _set(new, "paid_at", [0, 1], pa.scalar(None, pa.timestamp("us", tz="UTC")))
    new = _set(new, "due_at", [2, 3], _ts(day + dt.timedelta(days=1)))
    write_lake_table(lake, "bills", new, file_tag="late")
    got, update = latest_portrait(lake, day)
    assert update.action == "current" and update.bills == "1 parties recomputed", update
    assert_same_portrait(got, _full(lake, day), rel=1e-9)
    # The next days: the late bills fall due, others become late or leave the windows.
    for _ in range(2):
        day += dt.timedelta(days=1)
        got, update = latest_portrait(lake, day)
        assert update.bills.endswith("parties recomputed")
        assert_same_portrait(got, _full(lake, day), rel=1e-9)


def test_bills_arriving_in_a_lake_without_bills(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    """No bills table at first (empty partials), then the first bills file: its parties are
    recomputed, and the days after it advance as usual."""
    lake, later = _lake(tmp_path, {k: v for k, v in tables.items() if k != "bills"})
    got, update = latest_portrait(lake, FIRST_AS_OF)
    assert update.action == "built"
    assert_same_portrait(got, _full(lake, FIRST_AS_OF), rel=1e-9)
    write_lake_table(lake, "bills", tables["bills"].slice(0, 300), file_tag="first")
    day = FIRST_AS_OF + dt.timedelta(days=1)
    got, update = latest_portrait(lake, day)
    assert update.action == "advanced" and update.bills.endswith("parties recomputed")
    assert update.bills != "0 parties recomputed"
    assert_same_portrait(got, _full(lake, day), rel=1e-9)
