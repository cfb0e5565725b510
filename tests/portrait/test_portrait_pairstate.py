"""The numpy pair state (pairstate.py: base + overlay, aggregates kept by deltas) advanced day
by day equals windows.pair_state recomputed from the pair rollup at every date, and its
customer aggregates equal windows.payee_aggregates and payer_aggregates (exact integers):
pairs entering, pairs dropped when their last day leaves the 365-day window, last days leaving
the 90-day window, a payee's top customer going down; with and without compactions."""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from fieldbank.portrait.inputs import AsOf
from fieldbank.portrait.pairstate import PairState, aggregate_tables, day_number, full_aggregates, pair_keys
from fieldbank.portrait.windows import (
    MAX_WINDOW_DAYS,
    PAYEE_AGGREGATES,
    PAYER_AGGREGATES,
    pair_state,
    payee_aggregates,
    payer_aggregates,
)

START = dt.date(2024, 1, 1)
PARTIES = [f"p{i:03d}" for i in range(40)]


def _pair_day(rng: np.random.Generator, days: int) -> pa.Table:
    """payee x payer x day rows (one per triple), sparse and bursty so pairs come and go."""
    rows = set()
    for d in range(days):
        for _ in range(int(rng.integers(0, 12))):
            payee, payer = rng.integers(0, 12), rng.integers(0, len(PARTIES))
            if payee != payer:
                rows.add((int(payee), int(payer), d))
    payee, payer, day = (np.array(c) for c in zip(*sorted(rows), strict=True))
    return pa.table({
        "payee_id": pa.array([PARTIES[i] for i in payee]), "payer_id": pa.array([PARTIES[i] for i in payer]),
        "day": pa.array([START + dt.timedelta(days=int(d)) for d in day], pa.date32()),
        "amount_minor": pa.array(rng.integers(1, 10_000, len(day)), pa.int64()),
        "n_payments": pa.array(np.ones(len(day), np.int64)),
    })


def _rows(ids: pa.ChunkedArray) -> np.ndarray:
    return pc.index_in(ids, value_set=pa.array(PARTIES)).to_numpy()


def _day_changes(pd: pa.Table, new_day: dt.date) -> tuple[np.ndarray, ...]:
    """What state._advance_pairs feeds `apply`: the new day's pairs (+1 day, +amount, entered)
    and the leaving day's (-1, -amount), summed per pair."""
    leave_day = new_day - dt.timedelta(days=MAX_WINDOW_DAYS)
    parts = []
    for day, sign in ((new_day, 1), (leave_day, -1)):
        t = pd.filter(pc.equal(pd["day"], pa.scalar(day, pa.date32())))
        key = pair_keys(_rows(t["payee_id"]), _rows(t["payer_id"]))
        parts.append((key, np.full(len(key), sign), sign * t["amount_minor"].to_numpy(), np.full(len(key), sign > 0)))
    key = np.concatenate([p[0] for p in parts])
    uniq, inv = np.unique(key, return_inverse=True)
    sums = [np.bincount(inv, weights=np.concatenate([p[i] for p in parts]), minlength=len(uniq)).astype(np.int64)
            for i in (1, 2)]
    entered = np.bincount(inv, weights=np.concatenate([p[3] for p in parts]), minlength=len(uniq)) > 0
    return uniq, sums[0], sums[1], entered


def _tops(payees: pa.Table) -> dict[str, int]:
    return dict(zip(payees["party_id"].to_pylist(), payees["cust_top_minor_365d"].to_pylist(), strict=True))


def _expected(con: ibis.BaseBackend, pd: ibis.Table, as_of: dt.date) -> tuple[PairState, pa.Table, pa.Table]:
    a = AsOf(as_of)
    t = con.to_pyarrow(pair_state(pd, a))
    pairs = PairState.from_columns(pair_keys(_rows(t["payee_id"]), _rows(t["payer_id"])), t["days_n"].to_numpy(),
                                   t["amount_minor"].to_numpy(), t["last_day"].cast(pa.int32()).to_numpy())
    payees = con.to_pyarrow(payee_aggregates(pair_state(pd, a), a)).sort_by("party_id")
    payers = con.to_pyarrow(payer_aggregates(pair_state(pd, a), a)).sort_by("party_id")
    return pairs, payees, payers


@pytest.mark.parametrize("compact_every", [0, 7])
def test_pair_state_advanced_day_by_day_equals_a_recompute(compact_every: int) -> None:
    rng = np.random.default_rng(3)
    days = MAX_WINDOW_DAYS + 60
    pd_arrow = _pair_day(rng, days)
    con = ibis.duckdb.connect()
    con.con.register("pair_day", pd_arrow)  # noqa: SLF001
    pd = con.table("pair_day")
    first = START + dt.timedelta(days=MAX_WINDOW_DAYS)
    state, _, _ = _expected(con, pd, first)
    parties = pa.array(PARTIES)
    agg = full_aggregates(state.base, len(PARTIES), first)
    dropped = top_fell = 0
    for k in range(1, days - MAX_WINDOW_DAYS + 1):
        as_of = first + dt.timedelta(days=k)
        before = state.current().key
        key, d_days, d_amount, entered = _day_changes(pd_arrow, as_of - dt.timedelta(days=1))
        old_top = _tops(aggregate_tables(parties, agg)[0])
        state.apply(key, d_days, d_amount, entered, as_of - dt.timedelta(days=1), agg)
        if compact_every and k % compact_every == 0:
            state.compact()
        want, payees, payers = _expected(con, pd, as_of)
        for name in ("key", "days_n", "amount_minor", "last_day"):
            assert np.array_equal(getattr(state.current(), name), getattr(want.base, name)), (as_of, name)
        got_payees, got_payers = aggregate_tables(parties, agg)
        got_payees, got_payers = got_payees.sort_by("party_id"), got_payers.sort_by("party_id")
        assert got_payees.column_names == ["party_id", *PAYEE_AGGREGATES]
        assert got_payers.column_names == ["party_id", *PAYER_AGGREGATES]
        assert got_payees.equals(payees.cast(got_payees.schema)), as_of
        assert got_payers.equals(payers.cast(got_payers.schema)), as_of
        dropped += int(np.count_nonzero(~np.isin(before, state.current().key)))
        top_fell += sum(top < old_top.get(party, 0) for party, top in _tops(got_payees).items())
    assert day_number(first) == (first - dt.date(1970, 1, 1)).days
    assert dropped > 0 and top_fell > 0, (dropped, top_fell)  # the test saw pairs leave and tops go down
