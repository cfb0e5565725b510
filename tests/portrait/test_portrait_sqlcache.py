"""The compiled-SQL cache (sqlcache.py): a template rendered at a date is exactly what Ibis
compiles at that date; a query that depends on the date other than through shifted dates,
its year and its epoch day is not cached; templates persist across processes (in the state's
directory) and the latest portrait from them equals the full recompute."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import ibis
import pyarrow as pa
import pytest
from portrait_handmade import assert_same_portrait

from fieldbank.portrait import connect, execute_portrait, load_inputs
from fieldbank.portrait import sqlcache
from fieldbank.portrait.engine import duckdb_sql
from fieldbank.portrait.families import bills
from fieldbank.portrait.inputs import AsOf
from fieldbank.portrait.sqlcache import NOT_CACHEABLE, SqlTemplates, make_template, render
from fieldbank.portrait.state import latest_portrait, state_path
from fieldbank.portrait.testing import synthetic_tables, write_lake_table

DAYS = [dt.date(2025, 1, 1), dt.date(2024, 2, 29), dt.date(2025, 12, 31), dt.date(2026, 3, 1)]


def _events(con: ibis.BaseBackend) -> ibis.Table:
    con.con.register("ev", pa.table({  # noqa: SLF001
        "party_id": ["a", "b"], "ts": pa.array([dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)] * 2,
                                               pa.timestamp("us", tz="UTC")),
        "day": pa.array([dt.date(2024, 6, 1)] * 2, pa.date32()), "born": [1980, 1990]}))
    return con.table("ev")


def test_templates_render_what_ibis_compiles() -> None:
    con = connect("duckdb")
    ev = _events(con)

    def build(a: AsOf) -> ibis.Table:  # every derivation of the date the families use
        t = ev.filter(ev.ts < a.ts, ev.ts >= a.start_ts(365), ev.day >= a.start_date(90), ev.day < a.date)
        return t.mutate(age=a.day.year - t.born, epoch=ibis.literal((a.day - dt.date(1970, 1, 1)).days),
                        since=a.date.delta(t.day, unit="day"))

    cache = SqlTemplates("test-render")
    for day in DAYS:
        assert cache.sql(con, "q", build, day) == duckdb_sql(con, build(AsOf(day)))
    assert cache.made == 1 and cache.templates["q"] != NOT_CACHEABLE
    template = make_template(duckdb_sql(con, build(AsOf(sqlcache.SENTINEL))))
    assert "2901" not in template and all(render(template, d) == duckdb_sql(con, build(AsOf(d))) for d in DAYS)


def test_a_date_dependence_the_template_cannot_express_is_not_cached() -> None:
    con = connect("duckdb")
    ev = _events(con)

    def build(a: AsOf) -> ibis.Table:  # the month of D: not a shift of D, so no template
        return ev.mutate(m=ibis.literal(a.day.month))

    cache = SqlTemplates("test-month")
    for day in DAYS:
        assert cache.sql(con, "q", build, day) == duckdb_sql(con, build(AsOf(day)))
    assert cache.templates["q"] == NOT_CACHEABLE and cache.made == 1


def test_templates_persist_and_are_keyed(tmp_path: Path) -> None:
    con = connect("duckdb")
    ev = _events(con)
    key = sqlcache.cache_key(con, "test", [ev])
    assert key != sqlcache.cache_key(con, "test", [ev.select("party_id")])  # the inputs are in the key
    cache = SqlTemplates.load(key, tmp_path)
    cache.sql(con, "q", lambda a: ev.filter(ev.ts < a.ts), DAYS[0])
    cache.save()
    assert json.loads((tmp_path / f"{key}.json").read_text()).keys() == {"q"}
    sqlcache._IN_MEMORY.clear()  # noqa: SLF001 - a new process
    again = SqlTemplates.load(key, tmp_path)
    assert again.sql(con, "q", lambda a: pytest.fail("rebuilt"), DAYS[1]) == duckdb_sql(
        con, ev.filter(ev.ts < AsOf(DAYS[1]).ts))
    assert again.made == 0


def test_latest_portrait_from_persisted_templates_equals_full(tmp_path: Path) -> None:
    start = dt.date(2024, 3, 1)
    lake = tmp_path / "lake"
    for name, table in synthetic_tables(100, 8_000, start, 400, seed=3).items():
        write_lake_table(lake, name, table, file_tag="0")
    first = start + dt.timedelta(days=380)
    latest_portrait(lake, first)
    files = list((state_path(lake).parent / "sql").glob("*.json"))
    assert len(files) == 1
    templates = json.loads(files[0].read_text())
    assert bills.__name__ in templates and "state_bills_partials" not in templates  # built, not advanced yet
    assert all(t != NOT_CACHEABLE for t in templates.values()), [k for k, t in templates.items() if not t]
    sqlcache._IN_MEMORY.clear()  # noqa: SLF001 - the next day's run, a new process
    for k in (1, 2):
        day = first + dt.timedelta(days=k)
        table, update = latest_portrait(lake, day)
        assert update.action == "advanced"
        full = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=False), day)
        assert_same_portrait(table, full, rel=1e-9)
    templates = json.loads(files[0].read_text())
    assert "state_bills_partials" in templates and all(t != NOT_CACHEABLE for t in templates.values())
