"""Daily rollups: features from persisted rollups equal features from raw payments, and a new
day of events rebuilds only that day, reading only the new file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from portrait_handmade import assert_same_portrait

from fieldbank.portrait import connect, execute_portrait, load_inputs
from fieldbank.portrait.rollups import SCHEMAS, rollups_dir, update_rollups
from fieldbank.portrait.testing import synthetic_tables, write_lake_table

START = dt.date(2024, 9, 1)
DAYS = 240
NEW_DAY = START + dt.timedelta(days=DAYS - 1)


def _day_bounds(day: dt.date) -> tuple[pa.Scalar, pa.Scalar]:
    lo = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)
    ty = pa.timestamp("us", tz="UTC")
    return pa.scalar(lo, ty), pa.scalar(lo + dt.timedelta(days=1), ty)


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return synthetic_tables(120, 8000, START, DAYS, seed=21)


def _write_history(lake: Path, tables: dict[str, pa.Table]) -> pa.Table:
    """Everything except the payments of NEW_DAY; returns those held-back payments."""
    lo, _ = _day_bounds(NEW_DAY)
    payments = tables["payments"]
    for name, table in tables.items():
        if name != "payments":
            write_lake_table(lake, name, table, file_tag="0")
    write_lake_table(lake, "payments", payments.filter(pc.less(payments["ts"], lo)), file_tag="0")
    return payments.filter(pc.greater_equal(payments["ts"], lo))


def _rollup_tables(lake: Path) -> dict[str, pa.Table]:
    out = {}
    for name, schema in SCHEMAS.items():
        files = sorted((rollups_dir(lake) / name).glob("*.parquet"))
        table = pa.concat_tables([pq.read_table(f).cast(schema) for f in files])
        keys = [c for c in schema.names if c not in ("amount_minor", "n_payments")]
        out[name] = table.sort_by([(c, "ascending") for c in keys])
    return out


def test_new_day_is_incremental_and_equals_full_rebuild(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    lake = tmp_path / "lake"
    new_day_payments = _write_history(lake, tables)
    assert new_day_payments.num_rows > 0
    first = update_rollups(lake)
    assert first.days_rebuilt >= DAYS - 1 and first.rows_written > 0
    assert update_rollups(lake).days_rebuilt == 0  # nothing new: nothing to do

    write_lake_table(lake, "payments", new_day_payments, file_tag="new-day")
    con = connect("duckdb")  # the caller's connection (as the incremental state's): left as it was
    views = "SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal ORDER BY 1"
    before = con.con.execute(views).fetchall()
    step = update_rollups(lake, con)
    assert (step.files_new_or_changed, step.files_read, step.days_rebuilt) == (1, 1, 1)
    assert con.con.execute(views).fetchall() == before

    full = tmp_path / "full"
    full.mkdir()
    (full / "payments").symlink_to(lake / "payments", target_is_directory=True)
    update_rollups(full)
    incremental, rebuilt = _rollup_tables(lake), _rollup_tables(full)
    for name in SCHEMAS:
        assert incremental[name].equals(rebuilt[name]), name


def test_removed_file_removes_its_days(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    lake = tmp_path / "lake"
    new_day_payments = _write_history(lake, tables)
    (path,) = write_lake_table(lake, "payments", new_day_payments, file_tag="new-day")
    update_rollups(lake)
    assert NEW_DAY in _rollup_tables(lake)["party_day"]["day"].to_pylist()
    path.unlink()
    step = update_rollups(lake)
    assert (step.files_removed, step.days_rebuilt) == (1, 1)
    days = _rollup_tables(lake)["party_day"]["day"].to_pylist()
    assert NEW_DAY not in days and NEW_DAY - dt.timedelta(days=1) in days


@pytest.mark.slow
def test_features_from_rollups_equal_features_from_raw(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    lake = tmp_path / "lake"
    for name, table in tables.items():
        write_lake_table(lake, name, table, file_tag="0")
    con = connect("duckdb")
    via_rollups = load_inputs(con, lake, use_rollups=True)
    direct = load_inputs(con, lake, use_rollups=False)
    # A backfill: several dates reuse the same rollups.
    for as_of in (START + dt.timedelta(days=100), NEW_DAY + dt.timedelta(days=1)):
        assert_same_portrait(execute_portrait(via_rollups, as_of), execute_portrait(direct, as_of), rel=1e-12)
    # Each portrait drops its temporaries (a 400-date backfill must not pile them up).
    assert not [t for t in con.raw_sql("SELECT table_name FROM duckdb_tables()").fetchall()
                if t[0].startswith("_fieldbank_tmp_")]


def _shifted(payments: pa.Table, when: dt.datetime, n: int, tag: str) -> pa.Table:
    """n existing payments moved to `when`, with new ids."""
    t = payments.slice(0, n)
    t = t.set_column(0, "txn_id", pc.binary_join_element_wise(t["txn_id"], pa.scalar(tag), ""))
    return t.set_column(1, "ts", pa.array([when] * n, pa.timestamp("us", tz="UTC")))


def _assert_equals_full_rebuild(lake: Path, tmp_path: Path, step: str) -> None:
    full = tmp_path / f"full-{step}"
    full.mkdir()
    (full / "payments").symlink_to(lake / "payments", target_is_directory=True)
    update_rollups(full)
    incremental, rebuilt = _rollup_tables(lake), _rollup_tables(full)
    for name in SCHEMAS:
        assert incremental[name].equals(rebuilt[name]), f"{step}: {name}"


def test_day_files_month_files_and_compaction(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    lake = tmp_path / "lake"
    new_day_payments = _write_history(lake, tables)
    update_rollups(lake)
    party_dir = rollups_dir(lake) / "party_day"
    assert not list(party_dir.glob("????-??-??.parquet"))  # a first build writes month files only
    april = party_dir / f"{NEW_DAY:%Y-%m}.parquet"
    april_mtime = april.stat().st_mtime_ns

    # A new day of the newest month: its own small file, the month file untouched.
    write_lake_table(lake, "payments", new_day_payments, file_tag="new-day")
    update_rollups(lake)
    assert (party_dir / f"{NEW_DAY.isoformat()}.parquet").exists()
    assert april.stat().st_mtime_ns == april_mtime
    _assert_equals_full_rebuild(lake, tmp_path, "day-file")

    # The next month starts: April's day file is folded into April's month file.
    may_first = dt.datetime(2025, 5, 1, 6, tzinfo=dt.timezone.utc)
    write_lake_table(lake, "payments", _shifted(tables["payments"], may_first, 5, "-may"), file_tag="may")
    update_rollups(lake)
    assert sorted(p.name for p in party_dir.glob("????-??-??.parquet")) == ["2025-05-01.parquet"]
    assert april.stat().st_mtime_ns != april_mtime
    _assert_equals_full_rebuild(lake, tmp_path, "rollover")

    # Late events for a day already in a month file: that month file is rewritten.
    late = dt.datetime(2025, 3, 10, 12, tzinfo=dt.timezone.utc)
    write_lake_table(lake, "payments", _shifted(tables["payments"], late, 7, "-late"), file_tag="late")
    step = update_rollups(lake)
    assert (step.days_rebuilt, step.files_read) == (1, 2)  # the late file and March's original file
    _assert_equals_full_rebuild(lake, tmp_path, "late")
