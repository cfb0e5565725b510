"""Incremental portrait state: the latest portrait from running totals equals a full recompute
from the raw payments (counts and strings exactly, floats within 1e-9 relative; PageRank is
the same arithmetic, so the same tolerance), day after day, after a multi-day jump, after a
late-arriving file (rebuild) and with future events in the lake (point in time)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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
