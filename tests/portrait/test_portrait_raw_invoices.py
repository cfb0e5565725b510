"""The supply chain family in numpy from the invoices' and loans' files (raw_invoices.py)
equals its Ibis definition run by DuckDB (`supply_chain.compute`, PageRank included): rows,
nulls, integers exact, floats within 1e-12 (bit-identical except the sums that add in
another order: HHI and PageRank), on synthetic data with invoices on every window edge and
on hand-made cases; it declines (None) what it cannot do exactly, and the portrait paths
that use it (the cached full path, the latest portrait) equal the full recompute."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from portrait_handmade import assert_same_portrait

from fieldbank.contract import TABLES
from fieldbank.portrait import connect, execute_portrait, load_inputs, pipeline, sqlcache, state
from fieldbank.portrait.engine import duckdb_arrow, parquet_files
from fieldbank.portrait.families import supply_chain
from fieldbank.portrait.inputs import AsOf
from fieldbank.portrait.raw_invoices import _EXTENDED, quantile_cont, raw_supply_chain
from fieldbank.portrait.state import latest_portrait
from fieldbank.portrait.testing import synthetic_tables, write_lake_table

UTC = dt.timezone.utc
START = dt.date(2024, 3, 1)
DAYS = 420
MID = START + dt.timedelta(days=380)  # the date whose window edges the extra invoices sit on
# Before any invoice, one day in, a year in (MID: the edges), past the end of the history.
AS_OF_DATES = (START - dt.timedelta(days=3), START + dt.timedelta(days=1), START + dt.timedelta(days=200), MID,
               START + dt.timedelta(days=DAYS + 40))
# Sums that may add in another order than DuckDB's; every other float is bit-identical.
REORDERED_SUMS = {"sc_supplier_hhi_365d", "sc_buyer_hhi_365d", "sc_pagerank_365d"}
if not _EXTENDED:  # quantile_cont's fused multiply-add is then plain float64: an ulp off at most
    REORDERED_SUMS |= {"sc_buyer_days_late_p90_365d", "sc_supplier_days_late_p90_365d"}


def _at(day: dt.date, days: int = 0, us: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), UTC) + dt.timedelta(days=days, microseconds=us)


def _invoice(i: int, supplier: str, buyer: str, issued: dt.datetime, due: dt.datetime, paid: dt.datetime | None,
             amount: int = 1_000) -> dict:
    return {"invoice_id": f"x{i}", "supplier_id": supplier, "buyer_id": buyer, "issued_at": issued, "due_at": due,
            "amount_minor": amount, "paid_at": paid}


def _loan(i: int, party: str, opened: dt.datetime, defaulted: dt.datetime | None) -> dict:
    return {"loan_id": f"y{i}", "party_id": party, "lender": "bank_a", "opened_at": opened, "principal_minor": 100_000,
            "term_days": 90, "closed_at": None, "max_dpd": 0, "defaulted_at": defaulted, "written_off": False}


def _rows(table: str, rows: list[dict]) -> pa.Table:
    schema = TABLES[table].schema
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


def _edge_invoices(d: dt.date, biz: list[str]) -> list[dict]:
    """Invoices on the edges of `d`'s windows between existing businesses."""
    a, b, c, e = biz[:4]
    inv = [
        _invoice(0, a, b, _at(d), _at(d, 30), None),  # issued at D: not seen
        _invoice(1, a, b, _at(d, us=-1), _at(d, 30), None),  # the last microsecond before D
        _invoice(2, a, c, _at(d, -1, 86_399_000_000), _at(d), None),  # 23:59:59 the day before; due at D: not due
        _invoice(3, b, c, _at(d, -365), _at(d, -365), _at(d)),  # issued and due at D - 365 (in), paid at D (unpaid)
        _invoice(4, b, e, _at(d, -365, us=-1), _at(d, -365, us=-1), None),  # just before the window
        _invoice(5, c, a, _at(d, -60), _at(d, -40), _at(d, -39)),  # paid exactly 1 day late
        _invoice(6, c, a, _at(d, -60), _at(d, -40), _at(d, -39, us=-1)),  # paid 1 us short of a day late: 0
        _invoice(7, e, b, _at(d, -100), _at(d, -31), None),  # open, 31 days late at D: b in distress
        _invoice(8, e, c, _at(d, -100), _at(d, -30), None),  # open, exactly 30 days late: not distress
        _invoice(9, e, e, _at(d, -10), _at(d, -5), _at(d, -1)),  # a self-invoice
        _invoice(10, b, a, _at(d, -500), _at(d, -470), _at(d, -400)),  # tenure from before the window
        _invoice(11, b, a, _at(d, -20), _at(d, -2), _at(d, us=-1)),  # paid the last microsecond before D
        _invoice(12, a, b, _at(d, -20), _at(d, -365, us=-1), None),  # due just before the due window
        _invoice(13, a, "q_buyer_only", _at(d, -20), _at(d, -10), None),  # a party seen only as buyer
        _invoice(14, "q_old_s", "q_old_b", _at(d, -400), _at(d, -370), None),  # rows, but no counterparty of the window
    ]
    return inv


def _edge_loans(d: dt.date, biz: list[str]) -> list[dict]:
    return [_loan(0, biz[4], _at(d, -200), _at(d, us=-1)),  # defaulted the last microsecond before D
            _loan(1, biz[5], _at(d, -200), _at(d)),  # defaulted at D: not yet
            _loan(2, biz[6], _at(d), _at(d)),  # opened at D
            _loan(3, "q_no_invoices", _at(d, -200), _at(d, -100))]  # a party without invoices


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lake = tmp_path_factory.mktemp("raw_invoices") / "lake"
    tables = synthetic_tables(150, 40_000, START, DAYS, seed=11)
    biz = sorted(set(tables["invoices"]["supplier_id"].to_pylist()))
    # Ties and a reciprocal pair, and tenure counted before the window, come from the edges.
    tables["invoices"] = pa.concat_tables([tables["invoices"], _rows("invoices", _edge_invoices(MID, biz))])
    tables["loans"] = pa.concat_tables([tables["loans"], _rows("loans", _edge_loans(MID, biz))])
    for name, table in tables.items():
        write_lake_table(lake, name, table, file_tag="0")
    return lake


def _reference(lake: Path, as_of: dt.date) -> pa.Table:
    con = connect("duckdb")
    inp = load_inputs(con, lake, use_rollups=False)
    return duckdb_arrow(con, supply_chain.compute(inp, AsOf(as_of)))


def _numpy(lake: Path, as_of: dt.date) -> pa.Table | None:
    return raw_supply_chain(parquet_files(lake / "invoices"), parquet_files(lake / "loans"), as_of)


def assert_same_family(got: pa.Table, want: pa.Table, label: str) -> None:
    """Same rows (by party_id) and columns as the catalog; ints exact (DuckDB's integer sums
    are HUGEINTs: compared as int64); floats bit-identical, or within 1e-12 for REORDERED_SUMS."""
    types = {f.name: pa.int64() if f.dtype == "int64" else pa.float64() for f in supply_chain.FEATURES}
    assert got.column_names == ["party_id", *types], label
    assert sorted(want.column_names) == sorted(got.column_names), label
    got, want = got.sort_by("party_id"), want.sort_by("party_id")
    assert got["party_id"].equals(want["party_id"]), label
    for name, ty in types.items():
        g, w = got[name], want[name].cast(ty)
        assert g.type == ty, (label, name)
        assert g.is_null().equals(w.is_null()), f"{label} {name}: nulls differ"
        if name not in REORDERED_SUMS:
            assert g.equals(w), f"{label} {name}: values differ"
            continue
        gv, wv = g.drop_null().to_numpy(), w.drop_null().to_numpy()
        bad = ~np.isclose(gv, wv, rtol=1e-12, atol=0.0)
        assert not bad.any(), f"{label} {name}: {gv[bad][:3]} vs {wv[bad][:3]}"


def test_raw_supply_chain_equals_definition(lake: Path) -> None:
    for as_of in AS_OF_DATES:
        got = _numpy(lake, as_of)
        assert got is not None, as_of
        want = _reference(lake, as_of)
        assert_same_family(got, want, str(as_of))
        if as_of == AS_OF_DATES[0]:
            assert got.num_rows == 4  # only the edge invoices of 500 and 400 days before MID
        if as_of == MID:  # the edges are in, and every kind of null shows up
            assert got.num_rows > 40
            ids = set(got["party_id"].to_pylist())
            assert "q_buyer_only" in ids and "q_no_invoices" not in ids
            for name in ("sc_supplier_days_late_p90_365d", "sc_overdue_unpaid_minor", "sc_buyer_hhi_365d"):
                assert 0 < got[name].null_count < got.num_rows, name


def test_edges_values_by_hand(lake: Path) -> None:
    """A few of the edge invoices' effects, checked by hand on top of the comparison."""
    t = {r["party_id"]: r for r in _numpy(lake, MID).to_pylist()}
    q = t["q_buyer_only"]  # one invoice as buyer, issued 20 days ago, due 10 days ago, open
    assert (q["sc_suppliers_n_365d"], q["sc_buyers_n_365d"]) == (1, 0)
    assert q["sc_buyer_days_late_mean_365d"] == 10.0 and q["sc_buyer_days_late_p90_365d"] == 10.0
    assert q["sc_supplier_days_late_mean_365d"] is None and q["sc_buyer_hhi_365d"] is None
    assert q["sc_supplier_tenure_days_mean_365d"] == 20.0 and q["sc_supplier_hhi_365d"] == 1.0
    assert q["sc_overdue_unpaid_minor"] == 1_000 and q["sc_weighted_degree_minor_365d"] == 1_000
    old = t["q_old_b"]  # the counterparty columns are null, even the counts (a left join in SQL)
    assert old["sc_suppliers_n_365d"] is None and old["sc_counterparty_distress_share_365d"] is None
    assert old["sc_overdue_unpaid_minor"] == 1_000 and old["sc_weighted_degree_minor_365d"] is None
    assert old["sc_pagerank_365d"] is None and old["sc_buyer_days_late_mean_365d"] is None


def _hand_lake(tmp_path: Path, invoices: list[dict], loans: list[dict]) -> Path:
    """A lake of these invoices and loans (and a loan of another party: the Ibis definition
    needs a loans table to union with)."""
    loans = [*loans, _loan(99, "Z", _at(D, -10), None)]
    lake = tmp_path / "lake"
    write_lake_table(lake, "invoices", _rows("invoices", invoices), file_tag="0")
    write_lake_table(lake, "loans", _rows("loans", loans), file_tag="0")
    return lake


D = dt.date(2025, 6, 1)


def test_hand_made_cases(tmp_path: Path) -> None:
    """One invoice; then ties in the quantile (days late 0, 5, 5, 5, 9 of one buyer); a
    counterparty that defaulted; a party only as buyer."""
    one = _hand_lake(tmp_path / "one", [_invoice(0, "S", "B", _at(D, -50), _at(D, -20), _at(D, -15))], [])
    got = _numpy(one, D)
    assert got is not None and got.num_rows == 2
    assert_same_family(got, _reference(one, D), "one invoice")
    b = {r["party_id"]: r for r in got.to_pylist()}["B"]
    assert b["sc_buyer_days_late_p90_365d"] == 5.0 and b["sc_supplier_days_late_p90_365d"] is None
    assert b["sc_pagerank_365d"] < 1.0  # money flows B -> S

    late_days = [0, 5, 5, 5, 9]
    inv = [_invoice(i, f"S{i % 2}", "B", _at(D, -100), _at(D, -60), _at(D, -60 + k)) for i, k in enumerate(late_days)]
    inv += [_invoice(10, "S0", "C", _at(D, -100), _at(D, -90), _at(D, -50)),  # C: 40 days late: in distress
            _invoice(11, "C", "S1", _at(D, -30), _at(D, -10), None)]
    lake = _hand_lake(tmp_path / "ties", inv, [_loan(0, "S1", _at(D, -90), _at(D, -5))])
    got = _numpy(lake, D)
    assert_same_family(got, _reference(lake, D), "ties")
    r = {row["party_id"]: row for row in got.to_pylist()}
    # rn = 4 * 0.9 = 3.6: 5 + 0.6 * (9 - 5), as DuckDB's fused lo * (1 - d) + hi * d rounds it.
    assert r["B"]["sc_buyer_days_late_p90_365d"] == pytest.approx(7.4, rel=1e-15)
    assert r["B"]["sc_buyer_late_share_365d"] == 0.8
    assert r["S0"]["sc_counterparty_distress_share_365d"] == 0.5  # B no, C yes (40 days late)
    assert r["C"]["sc_counterparty_distress_share_365d"] == 0.5  # S0 no, S1 yes (a default)
    assert r["B"]["sc_counterparty_distress_share_365d"] == 0.5  # S0 no, S1 yes
    assert (r["C"]["sc_suppliers_n_365d"], r["C"]["sc_buyers_n_365d"]) == (1, 1)
    assert r["S1"]["sc_buyer_days_late_mean_365d"] == 10.0  # open, due 10 days before D


def test_empty_lakes(tmp_path: Path) -> None:
    """No invoice files, and invoices only after D: no rows, as the SQL."""
    assert _numpy(tmp_path / "nothing", D).num_rows == 0
    lake = _hand_lake(tmp_path, [_invoice(0, "S", "B", _at(D, 1), _at(D, 30), None)], [])
    got = _numpy(lake, D)
    assert got.num_rows == 0
    assert_same_family(got, _reference(lake, D), "after D")


def _write_raw(lake: Path, table: str, t: pa.Table) -> None:
    """Parquet outside the contract (nullable ids, other units): written as given."""
    d = lake / table / "month=2025-05"
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(t, d / "part-0.parquet")


@pytest.mark.parametrize("case", ["null_id", "dictionary_id", "zero_amount", "huge_amount", "ns_times", "ms_times"])
def test_declines_what_it_cannot_do_exactly(tmp_path: Path, case: str) -> None:
    """A null id, ids stored as an Arrow dictionary, an amount below 1, amounts whose float
    sums could pass 2**53, times not in microseconds: None (the caller runs the SQL)."""
    rows = [_invoice(0, "S", "B", _at(D, -50), _at(D, -20), None), _invoice(1, "S", "C", _at(D, -50), _at(D, -20), None)]
    t = _rows("invoices", rows)
    schema = t.schema
    if case == "null_id":
        schema = schema.set(schema.get_field_index("buyer_id"), pa.field("buyer_id", pa.string()))
        t = t.cast(schema).set_column(schema.get_field_index("buyer_id"), "buyer_id", pa.array(["B", None]))
    elif case == "dictionary_id":
        i = schema.get_field_index("supplier_id")
        t = t.set_column(i, "supplier_id", t["supplier_id"].dictionary_encode())
    elif case in ("zero_amount", "huge_amount"):
        amounts = pa.array([1, 0] if case == "zero_amount" else [1, 2**52], pa.int64())
        t = t.set_column(schema.get_field_index("amount_minor"), "amount_minor", amounts)
    else:
        for name in ("issued_at", "due_at", "paid_at"):
            i = schema.get_field_index(name)
            t = t.set_column(i, name, t[name].cast(pa.timestamp(case[:2], tz="UTC")))
    _write_raw(tmp_path, "invoices", t)
    assert _numpy(tmp_path, D) is None


def test_cached_full_portrait_uses_numpy_and_equals_full(lake: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """execute_portrait with a SQL cache: the first run makes the templates (SQL), the next
    ones compute the family in numpy; both equal the portrait without a cache."""
    results = []
    original = pipeline.raw_supply_chain_rows

    def recording(inp, as_of):  # noqa: ANN001, ANN202
        results.append(original(inp, as_of))
        return results[-1]

    monkeypatch.setattr(pipeline, "raw_supply_chain_rows", recording)
    sqlcache._IN_MEMORY.clear()  # noqa: SLF001
    for as_of in (MID, MID + dt.timedelta(days=1)):
        inp = load_inputs(connect("duckdb"), lake, use_rollups=False, named_views=True)
        cache = pipeline.payment_sql_templates(inp)
        agg = pipeline.payment_aggregates(inp, AsOf(as_of), cache)
        got = execute_portrait(inp, as_of, agg=agg, sql_cache=cache)
        full = execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=False), as_of)
        assert_same_portrait(got, full, rel=1e-12)
    assert len(results) == 1 and results[0] is not None  # the second date, from its template


def test_latest_portrait_uses_numpy_and_equals_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The latest portrait computes the supply chain family in numpy from the start
    (state.latest_portrait) and, once the templates exist, its job takes those rows, not the
    SQL (no PageRank from the edges' SQL); the portrait equals the full recompute."""
    lake = tmp_path / "lake"
    for name, table in synthetic_tables(100, 8_000, START, 400, seed=3).items():
        write_lake_table(lake, name, table, file_tag="0")
    calls, sql_ranks = [], []
    original, original_ranks = state.raw_supply_chain, pipeline.pagerank_arrow
    monkeypatch.setattr(state, "raw_supply_chain", lambda inv, loans, a: calls.append(a) or original(inv, loans, a))
    monkeypatch.setattr(pipeline, "pagerank_arrow", lambda e: sql_ranks.append(1) or original_ranks(e))
    first = START + dt.timedelta(days=380)
    for k in range(3):
        day = first + dt.timedelta(days=k)
        sql_ranks.clear()
        table, _ = latest_portrait(lake, day)
        assert_same_portrait(table, execute_portrait(load_inputs(connect("duckdb"), lake, use_rollups=False), day),
                             rel=1e-9)
        assert calls[-1] == day and (k == 0 or not sql_ranks), (k, sql_ranks)  # the first run makes the templates


@pytest.mark.parametrize("n", [1, 2, 3, 10, 11, 37])
@pytest.mark.parametrize("max_days", [366, 2**11])
def test_quantile_cont_equals_duckdb(n: int, max_days: int) -> None:
    """Groups of n values (ties included) against DuckDB's quantile_cont, bit for bit (the
    family's days late in the due window are below 366; up to 2**11 is exact too)."""
    rng = np.random.default_rng(n)
    groups = np.repeat(np.arange(300), n)
    values = rng.integers(0, max_days, len(groups))
    values[::7] = values[0]  # ties
    con = connect("duckdb").con
    con.register("v", pa.table({"g": groups, "v": values.astype(np.float64)}))
    want = con.sql("SELECT g, quantile_cont(v, 0.9) AS q FROM v GROUP BY g ORDER BY g").to_arrow_table()
    got = quantile_cont(values, groups, 300, 0.9)
    if _EXTENDED:
        assert np.array_equal(got, want["q"].to_numpy())
    else:
        assert np.allclose(got, want["q"].to_numpy(), rtol=1e-15, atol=0)
