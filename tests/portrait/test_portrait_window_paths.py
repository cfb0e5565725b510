"""The DuckDB window sums (per-bucket sums in SQL, windows in numpy) equal the Ibis reference
`window_sums` for every window; the raw-payments aggregates in numpy (raw_payments.py) equal
`window_sums` and the customer aggregates of `pair_state`; the cheap UTC date equals
`ts.date()`; the business and household families from raw payments equal those from the
persisted rollups, every column."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fieldbank.portrait import connect, load_inputs
from fieldbank.portrait.catalog import catalog
from fieldbank.portrait.engine import duckdb_arrow, duckdb_sql, utc_date
from fieldbank.portrait.families import business, household
from fieldbank.portrait.inputs import AsOf
from fieldbank.portrait.pipeline import (
    ALL_WINDOWS,
    ARROW_TYPES,
    payment_aggregates,
    payment_families_arrow,
    payment_family_arrow,
    payment_sql_templates,
)
from fieldbank.portrait.raw_payments import pair_order, raw_payment_aggregates
from fieldbank.portrait.testing import synthetic_tables, write_lake_table
from fieldbank.portrait.windows import (
    full_aggregates,
    pair_state,
    payee_aggregates,
    payer_aggregates,
    window_sums,
    window_sums_arrow,
)

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
        # An essential category on the refunds too: essentials count purchases only.
        "category": ["food"] * (2 * len(edges)),
    })
    tables["payments"] = pa.concat_tables([pay, extra.cast(pay.schema)])
    assert tables["payments"]["category"].null_count > 0  # null categories are read too
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


def _equal_tables(got: pa.Table, want: pa.Table, label: str) -> None:
    got, want = _sorted(got), _sorted(want)
    assert got.column_names == want.column_names, label
    assert got.num_rows == want.num_rows, label
    for name in got.column_names:  # DuckDB's integer SUMs are HUGEINTs (decimal128): compared as int64
        assert got[name].type == want[name].type or pa.types.is_decimal(want[name].type), (label, name)
        assert got[name].equals(want[name].cast(got[name].type)), f"{label} {name}"


def test_raw_payment_aggregates_equal_definitions(lake: Path) -> None:
    """raw_payments.py's numpy aggregates equal the Ibis definitions over the raw payments:
    window_sums (every window of every payment family), and payee_aggregates /
    payer_aggregates of pair_state, rows and values, at dates around the history."""
    con = connect("duckdb")
    inp = load_inputs(con, lake, use_rollups=False)
    assert inp.payment_files
    for as_of in AS_OF_DATES:
        a = AsOf(as_of)
        got = raw_payment_aggregates(list(inp.payment_files), as_of, ALL_WINDOWS)
        assert got is not None
        pairs = pair_state(inp.pair_day, a)
        for table, want in ((got.windows, window_sums(inp.party_day, a, ALL_WINDOWS)),
                            (got.payees, payee_aggregates(pairs, a)), (got.payers, payer_aggregates(pairs, a))):
            _equal_tables(table, duckdb_arrow(con, want), f"{as_of} {table.column_names[1]}")
        if as_of == AS_OF_DATES[2]:
            assert got.windows.num_rows > 100 and got.payees.num_rows > 20 and got.payers.num_rows > 50


def _catalog_types(t: pa.Table) -> pa.Table:
    types = {f.name: ARROW_TYPES[f.dtype] for f in catalog()}
    return t.cast(pa.schema([pa.field(n, types.get(n, t.schema.field(n).type)) for n in t.column_names]))


def test_families_from_raw_numpy_equal_definitions(lake: Path) -> None:
    """The business and household families over the numpy aggregates (payment_aggregates on
    raw payments) equal the families over the Ibis definitions (full_aggregates), every
    column, after the portrait's cast to the catalog's types."""
    con = connect("duckdb")
    inp = load_inputs(con, lake, use_rollups=False)
    for as_of in AS_OF_DATES:
        a = AsOf(as_of)
        agg = payment_aggregates(inp, a)
        assert agg.pairs is None and agg.payees is not None  # the numpy path was taken
        for fam in (business, household):
            got = _catalog_types(_sorted(duckdb_arrow(con, fam.compute(inp, a, agg))))
            want = _catalog_types(_sorted(duckdb_arrow(con, fam.compute(inp, a, full_aggregates(inp, a, fam.WINDOWS)))))
            assert got.equals(want), f"{as_of} {fam.__name__}"


def test_raw_payments_fall_back_to_sql_when_sums_could_leave_exact_range(tmp_path: Path) -> None:
    """An amount so large that float64 sums might not be exact: the numpy path declines and
    payment_aggregates runs the SQL path, with the same families as the definitions."""
    tables = synthetic_tables(60, 2_000, START, DAYS, seed=9)
    pay = tables["payments"]
    amounts = pay["amount_minor"].to_numpy().copy()
    amounts[0] = 2**50
    tables["payments"] = pay.set_column(pay.schema.get_field_index("amount_minor"), "amount_minor",
                                        pa.array(amounts, pa.int64()))
    for name, table in tables.items():
        write_lake_table(tmp_path / "lake", name, table, file_tag="0")
    con = connect("duckdb")
    inp = load_inputs(con, tmp_path / "lake", use_rollups=False)
    a = AsOf(AS_OF_DATES[2])
    assert raw_payment_aggregates(list(inp.payment_files or ()), a.day, ALL_WINDOWS) is None
    agg = payment_aggregates(inp, a)
    assert agg.pairs is not None  # the SQL path
    for fam in (business, household):
        got = _catalog_types(_sorted(duckdb_arrow(con, fam.compute(inp, a, agg))))
        want = _catalog_types(_sorted(duckdb_arrow(con, fam.compute(inp, a, full_aggregates(inp, a, fam.WINDOWS)))))
        assert got.equals(want), fam.__name__


@pytest.mark.parametrize("parties_n", [1, 300, 70_000, 5_000_000])
def test_pair_order_sorts_by_payee_then_payer(parties_n: int) -> None:
    """The radix sort's permutation sorts (payee, payer) as a lexicographic sort does, with
    one 16-bit digit (300 parties) or several (70k, 5M)."""
    rng = np.random.default_rng(parties_n)
    payee, payer = rng.integers(0, parties_n, 5_000), rng.integers(0, parties_n, 5_000)
    order = pair_order(payee, payer, parties_n)
    want = np.lexsort((payer, payee))
    assert np.array_equal(payee[order], payee[want]) and np.array_equal(payer[order], payer[want])


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
            raw, rolled = _catalog_types(raw), _catalog_types(rolled)  # integer SUMs: HUGEINT or int64
            for name in raw.column_names:  # float features are the same arithmetic on the same ints
                assert raw[name].equals(rolled[name]), f"{as_of} {name}"


def test_payment_families_from_cached_sql_equal_compiled(lake: Path) -> None:
    """payment_aggregates + payment_family_arrow from the SQL templates (made by the first
    date, rendered for the others, on new connections) equal the families over the Ibis
    definitions (full_aggregates), compiled without a cache; payment_families_arrow (the
    second family on a cursor) returns the same tables."""
    made = []
    for as_of in AS_OF_DATES[1:]:
        a = AsOf(as_of)
        inp = load_inputs(connect("duckdb"), lake, use_rollups=False, named_views=True)
        cache = payment_sql_templates(inp)
        agg = payment_aggregates(inp, a, cache)
        got = [_sorted(payment_family_arrow(inp, a, fam, agg, cache)) for fam in (business, household)]
        made.append(cache.made)
        side_by_side = payment_families_arrow(inp, a, (business, household), agg, cache)  # on a cursor too
        assert [_sorted(t) for t in side_by_side] == got, as_of
        ref_inp = load_inputs(connect("duckdb"), lake, use_rollups=False)
        want = [_sorted(duckdb_arrow(ref_inp.con, fam.compute(ref_inp, a, full_aggregates(ref_inp, a, fam.WINDOWS))))
                for fam in (business, household)]
        for g, w in zip(got, want, strict=True):
            assert _catalog_types(g).equals(_catalog_types(w)), as_of
    assert made[1:] == [0] * (len(made) - 1), made  # later dates render the templates
    assert all(t for t in cache.templates.values()), "a payment query was not cacheable"
