"""The latest portrait's queries on several DuckDB cursors (cursors.CursorPool,
pipeline.start_portrait): a cursor sees the creating connection's views and the registered
Arrow tables, and the portrait made two queries at a time, with the lake-only families run
beside the state's advance, equals the full recompute day after day."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from portrait_handmade import assert_same_portrait

from fieldbank.portrait import connect, execute_portrait, load_inputs, pipeline, sqlcache, state
from fieldbank.portrait.cursors import CursorPool
from fieldbank.portrait.testing import synthetic_tables, write_lake_table

START = dt.date(2024, 3, 1)
FIRST_AS_OF = START + dt.timedelta(days=375)
TY = pa.timestamp("us", tz="UTC")


def test_cursors_see_the_views_and_registered_tables(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "x.parquet")
    con = connect("duckdb")
    con.raw_sql(f"CREATE TEMP VIEW v_x AS SELECT x FROM read_parquet('{tmp_path / 'x.parquet'}')")
    con.con.register("empty_t", pa.table({"y": pa.array([], pa.int64())}))
    pool = CursorPool(con)
    try:
        def job(cur) -> tuple:  # noqa: ANN001 - a DuckDB cursor
            return (cur.sql("SELECT sum(x) FROM v_x").fetchall()[0][0], cur.sql("SELECT count(*) FROM empty_t").fetchall()[0][0],
                    cur.sql("SELECT current_setting('TimeZone')").fetchall()[0][0], threading.current_thread().name)

        first = [pool.submit(job) for _ in range(4)]
        assert {f.result()[:3] for f in first} == {(6, 0, "UTC")}
        assert all(f.result()[3] != threading.current_thread().name for f in first)  # ran in the pool's threads
        pool.register("late_t", pa.table({"z": [5, 7]}))  # visible to jobs submitted from now on
        second = [pool.submit(lambda cur: cur.sql("SELECT sum(z) FROM late_t").fetchall()[0][0]) for _ in range(4)]
        assert {f.result() for f in second} == {12}
        pool.register("late_t", pa.table({"z": [1]}))  # a new table under the same name replaces it
        assert pool.submit(lambda cur: cur.sql("SELECT sum(z) FROM late_t").fetchall()[0][0]).result() == 1
    finally:
        pool.close()


def _ts(day: dt.date) -> pa.Scalar:
    return pa.scalar(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc), TY)


def _payments_between(t: pa.Table, lo: dt.date | None, hi: dt.date) -> pa.Table:
    keep = pc.less(t["ts"], _ts(hi))
    if lo is not None:
        keep = pc.and_(keep, pc.greater_equal(t["ts"], _ts(lo)))
    return t.filter(keep)


def test_latest_portrait_with_queries_beside_the_advance_equals_full(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tables = synthetic_tables(120, 20_000, START, 390, seed=11)
    lake = tmp_path / "lake"
    for name, table in tables.items():
        if name != "payments":
            write_lake_table(lake, name, table, file_tag="0")
    write_lake_table(lake, "payments", _payments_between(tables["payments"], None, FIRST_AS_OF), file_tag="0")

    started: list[dt.date] = []
    real_start = pipeline.start_portrait

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = real_start(*args, **kwargs)
        if out is not None:
            started.append(out.as_of)
        return out

    monkeypatch.setattr(state, "start_portrait", spy)
    # Templates are shared in-process by key (same schema, same definitions): an earlier test's
    # would make this first run look like a later one.
    monkeypatch.setattr(sqlcache, "_IN_MEMORY", {})
    _, update = state.latest_portrait(lake, FIRST_AS_OF)
    assert update.action == "built"
    assert started == [], "the first run makes the templates, one query after the other"
    day = FIRST_AS_OF
    for step in (1, 1, 3):  # single days, then a jump: the lake-only queries start before the advance
        for k in range(step):
            d = day + dt.timedelta(days=k)
            write_lake_table(lake, "payments", _payments_between(tables["payments"], d, d + dt.timedelta(days=1)),
                             file_tag=f"d{d}")
        day += dt.timedelta(days=step)
        seconds: dict[str, float] = {}
        got, update = state.latest_portrait(lake, day, seconds=seconds)
        assert (update.action, update.days) == ("advanced", step)
        assert started[-1] == day and set(seconds) == {"open", "state", "portrait"}
        full = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=False), day)
        assert_same_portrait(got, full, rel=1e-9)


def test_a_party_paying_for_the_first_time_gets_a_windows_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A party with no payment before the state's date pays on a new day: the day's join to the
    windows' rows finds none, so it is appended (state._Windows.rows_of_unseen), and the
    portrait still equals the full recompute on that day and the next."""
    tables = synthetic_tables(120, 20_000, START, 390, seed=13)
    payments = tables["payments"]
    first_day = _payments_between(payments, FIRST_AS_OF, FIRST_AS_OF + dt.timedelta(days=1))
    newcomer = first_day["payer_id"][0]
    theirs = pc.or_(pc.equal(payments["payer_id"], newcomer), pc.equal(payments["payee_id"], newcomer))
    # The newcomer's payments before FIRST_AS_OF never happened; the rest of the lake is as generated.
    payments = payments.filter(pc.or_(pc.invert(theirs), pc.greater_equal(payments["ts"], _ts(FIRST_AS_OF))))
    lake = tmp_path / "lake"
    for name, table in tables.items():
        if name != "payments":
            write_lake_table(lake, name, table, file_tag="0")
    write_lake_table(lake, "payments", _payments_between(payments, None, FIRST_AS_OF), file_tag="0")
    state.latest_portrait(lake, FIRST_AS_OF)

    appended: list[int] = []
    real = state._Windows.rows_of_unseen  # noqa: SLF001

    def spy(self, party_ids):  # noqa: ANN001, ANN202
        appended.append(len(party_ids))
        return real(self, party_ids)

    monkeypatch.setattr(state._Windows, "rows_of_unseen", spy)  # noqa: SLF001
    for k in range(2):
        d = FIRST_AS_OF + dt.timedelta(days=k)
        write_lake_table(lake, "payments", _payments_between(payments, d, d + dt.timedelta(days=1)), file_tag=f"d{d}")
        got, update = state.latest_portrait(lake, d + dt.timedelta(days=1))
        assert (update.action, update.days) == ("advanced", 1)
        full = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=False), d + dt.timedelta(days=1))
        assert_same_portrait(got, full, rel=1e-9)
    assert appended and appended[0] >= 1, "the newcomer's first day appends it to the windows"
