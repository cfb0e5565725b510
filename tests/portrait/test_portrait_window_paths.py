"""The DuckDB window sums (per-bucket sums in SQL, windows in numpy) equal the Ibis reference
`window_sums` for every window; the cheap UTC date equals `ts.date()`; the business and
household families from raw payments equal those from the persisted rollups, every column."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fieldbank.portrait import connect, load_inputs
from fieldbank.portrait.engine import duckdb_arrow, duckdb_sql, utc_date
from fieldbank.portrait.families import business, household
from fieldbank.portrait.inputs import AsOf
from fieldbank.portrait.pipeline import ALL_WINDOWS, payment_aggregates, payment_family_arrow, payment_sql_templates
from fieldbank.portrait.testing import synthetic_tables, write_lake_table
from fieldbank.portrait.windows import window_sums, window_sums_arrow

START = dt.date(2024, 3, 1)
DAYS = 420
# Before the history (windows partly empty), one day into it, the middle, and past its end.
AS_OF_DATES = (START - dt.timedelta(days=3), START + dt.timedelta(days=1), START + dt.timedelta(days=200),
               START + dt.timedelta(days=DAYS + 40))


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("windows") / "lake"
    tables = synthetic_tables(150, 12_000, START, DAYS, seed=5)
    # Payments on the edges of the windows of the middle date: the first and the last
    # microsecond of its 365-day window, a day boundary, both sides of one pair on one day.
    d = AS_OF_DATES[2]
    utc = dt.timezone.utc
    edges = [dt.datetime.combine(d, dt.time(), utc) - dt.timedelta(microseconds=1),
             dt.datetime.combine(d, dt.time(), utc),
             dt.datetime.combine(d - dt.timedelta(days=365), dt.time(), utc),
             dt.datetime.combine(d - dt.timedelta(days=365), dt.time(), utc) - dt.timedelta(microseconds=1),
             dt.datetime.combine(d - dt.timedelta(days=30), dt.time(), utc) - dt.timedelta(microseconds=1),
             dt.datetime.combine(d - dt.timedelta(days=30), dt.time(), utc)]
    pay = tables["payments"]
    ids = pay["payee_id"][0].as_py(), pay["payer_id"][0].as_py()
    extra = pa.table({
        "txn_id": [f"edge{i}{j}" for i in range(len(edges)) for j in range(2)],
        "ts": [t for t in edges for _ in range(2)],
        "payer_id": [ids[j] for _ in edges for j in (1, 0)],
        "payee_id": [ids[j] for _ in edges for j in (0, 1)],
        "amount_minor": [100 + i for i in range(2 * len(edges))],
        "channel": [pay["channel"][0].as_py()] * (2 * len(edges)),
        "kind": ["purchase", "refund"] * len(edges),
        "category": [pay["category"][0].as_py()] * (2 * len(edges)),
    })
    tables["payments"] = pa.concat_tables([pay, extra.cast(pay.schema)])
    for name, table in tables.items():
        write_lake_table(lake, name, table, file_tag="0")
    return lake


def _sorted(t: pa.Table) -> pa.Table:
    return t.sort_by("party_id")


@pytest.mark.parametrize("use_rollups", [False, True])
def test_window_sums_arrow_equals_window_sums(lake: Path, use_rollups: bool) -> None:
    con = connect("duckdb")
    inp = load_inputs(con, lake, use_rollups=use_rollups)
    for as_of in AS_OF_DATES:
        a = AsOf(as_of)
        got = _sorted(window_sums_arrow(con, inp.party_day, a, ALL_WINDOWS))
        want = _sorted(con.con.sql(duckdb_sql(con, window_sums(inp.party_day, a, ALL_WINDOWS))).to_arrow_table())
        assert got.column_names == want.column_names
        assert got.num_rows == want.num_rows
        if as_of == AS_OF_DATES[2]:
            assert got.num_rows > 100
        for name in got.column_names:
            assert got[name].equals(want[name].cast(got[name].type)), f"{as_of} {name}"


def test_utc_date_equals_ts_date() -> None:
    con = connect("duckdb")
    utc = dt.timezone.utc
    base = [dt.datetime(1969, 12, 31, 23, 59, 59, 999_999, utc), dt.datetime(1970, 1, 1, tzinfo=utc),
            dt.datetime(1900, 3, 1, 0, 0, 0, 1, utc), dt.datetime(2024, 2, 29, 23, 59, 59, 999_999, utc),
            dt.datetime(2025, 5, 1, tzinfo=utc), dt.datetime(2262, 4, 11, 23, 47, 16, tzinfo=utc)]
    rng = np.random.default_rng(3)
    us = rng.integers(-2_000_000_000_000_000, 4_000_000_000_000_000, 5_000)
    ts = pa.concat_arrays([pa.array(base, pa.timestamp("us", tz="UTC")),
                           pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))])
    con.con.register("ts_edges", pa.table({"ts": ts}))
    t = con.table("ts_edges")
    out = con.con.sql(duckdb_sql(con, t.select(fast=utc_date(t.ts, "duckdb"), ref=t.ts.date()))).to_arrow_table()
    assert out["fast"].equals(out["ref"])
    assert out["ref"].null_count == 0


def test_business_and_household_raw_equal_rollups(lake: Path) -> None:
    con = connect("duckdb")
    paths = {flag: load_inputs(con, lake, use_rollups=flag) for flag in (False, True)}
    for as_of in AS_OF_DATES:
        a = AsOf(as_of)
        out = {}
        for flag, inp in paths.items():
            agg = payment_aggregates(inp, a)
            out[flag] = [_sorted(duckdb_arrow(con, fam.compute(inp, a, agg))) for fam in (business, household)]
        for raw, rolled in zip(out[False], out[True], strict=True):
            assert raw.column_names == rolled.column_names
            for name in raw.column_names:  # float features are the same arithmetic on the same ints
                assert raw[name].equals(rolled[name]), f"{as_of} {name}"


def test_payment_families_from_cached_sql_equal_compiled(lake: Path) -> None:
    """payment_aggregates + payment_family_arrow from the SQL templates (made by the first
    date, rendered for the others, on new connections) equal the same without a cache."""
    made = []
    for as_of in AS_OF_DATES[1:]:
        a = AsOf(as_of)
        inp = load_inputs(connect("duckdb"), lake, use_rollups=False, named_views=True)
        cache = payment_sql_templates(inp)
        agg = payment_aggregates(inp, a, cache)
        got = [_sorted(payment_family_arrow(inp, a, fam, agg, cache)) for fam in (business, household)]
        made.append(cache.made)
        ref_inp = load_inputs(connect("duckdb"), lake, use_rollups=False)
        ref_agg = payment_aggregates(ref_inp, a)
        want = [_sorted(duckdb_arrow(ref_inp.con, fam.compute(ref_inp, a, ref_agg))) for fam in (business, household)]
        for g, w in zip(got, want, strict=True):
            assert g.equals(w), as_of
    assert made[1:] == [0] * (len(made) - 1), made  # later dates render the templates
    assert all(t for t in cache.templates.values()), "a payment query was not cacheable"
