"""The payment aggregates of the raw-payments path (no rollups) on DuckDB, in numpy.

What `windows.window_sums` and `payee_aggregates` / `payer_aggregates` of `pair_state`
compute from the raw payments, with the same rows and int64 values (row order not defined),
read straight from the Parquet files. Measured at 1M payments (docs/portrait.md, session 7):
DuckDB's hash group-bys of the 2M party-side rows into 232k (party, bucket) groups of 9 sums,
and of the 720k purchases into 687k (payee, payer) pairs, spend most of their time missing
the cache on wide per-group states; here every party id is read as a Parquet dictionary
index, mapped once to a small integer, and each measure is one `bincount` into a dense
party x bucket array (2 MB), the pairs one sort of int64 keys.

The Ibis definitions in windows.py stay the definitions: `MEASURE_ROWS` restates each
measure's condition over the raw columns, and the tests check every column against them.
`raw_payment_aggregates` returns None when an input falls outside what this path handles
exactly (a null id or kind, amounts whose sums could leave int64): the caller then runs the
SQL path.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank.contract import ESSENTIAL_CATEGORIES
from fieldbank.portrait.windows import (
    BUCKETS_N,
    INCOME_KINDS,
    INFLOW_KINDS,
    MAX_WINDOW_DAYS,
    MEASURES,
    MONTH_DAYS,
    PAYEE_AGGREGATES,
    PAYER_AGGREGATES,
    Window,
    measures_of,
    windows_from_dense,
)

EPOCH = dt.date(1970, 1, 1)
RECENT_DAYS = 90  # payee_aggregates' cust_n_90d and payer_aggregates' window
# float64 adds integers exactly while every partial sum stays below 2**53 (bincount's weights).
EXACT_FLOAT_SUM = 2**53
UNITS_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


@dataclass(frozen=True)
class RawRows:
    """The payments of the 365 days before D, one entry per payment (numpy arrays)."""

    parties: pa.Array  # party ids (strings); payee / payer hold indices into it
    payee: np.ndarray  # int64
    payer: np.ndarray  # int64
    days_ago: np.ndarray  # int64, 1 = the day before D ... 365
    amount: np.ndarray  # int64
    kind_in: Callable[[tuple[str, ...]], np.ndarray]  # kind in the values (bool per row)
    essential: np.ndarray  # bool: category in ESSENTIAL_CATEGORIES (null: False)


@dataclass(frozen=True)
class MeasureRows:
    """A measure of windows.MEASURES on raw payments: the party side ("in": the payee, "out":
    the payer), the rows it sums (mask) and what it sums ("amount", "count", "days"; "net":
    +amount in, -amount out, both sides)."""

    side: str
    mask: Callable[[RawRows], np.ndarray]
    value: str


def _purchase(r: RawRows) -> np.ndarray:
    return r.kind_in(("purchase",))


# The conditions of windows.MEASURES (direction, kind, category, amount) on a raw payment.
MEASURE_ROWS: dict[str, MeasureRows] = {
    "sales_minor": MeasureRows("in", _purchase, "amount"),
    "sales_n": MeasureRows("in", _purchase, "count"),
    "sales_days": MeasureRows("in", _purchase, "days"),
    "refunds_out_minor": MeasureRows("out", lambda r: r.kind_in(("refund",)), "amount"),
    "spend_minor": MeasureRows("out", _purchase, "amount"),
    "essentials_minor": MeasureRows("out", lambda r: _purchase(r) & r.essential, "amount"),
    "income_minor": MeasureRows("in", lambda r: r.kind_in(INCOME_KINDS), "amount"),
    "inflow_minor": MeasureRows("in", lambda r: r.kind_in(INFLOW_KINDS), "amount"),
    "net_minor": MeasureRows("both", lambda r: r.amount > 0, "net"),
}
assert MEASURE_ROWS.keys() == MEASURES.keys(), "every measure needs its raw-payment form"


@dataclass(frozen=True)
class RawAggregates:
    windows: pa.Table  # window_sums rows: party_id + one int64 column per window
    payees: pa.Table  # payee_aggregates(pair_state) rows: party_id + PAYEE_AGGREGATES
    payers: pa.Table  # payer_aggregates(pair_state) rows: party_id + PAYER_AGGREGATES


def raw_payment_aggregates(files: list[Path], as_of: dt.date, windows: tuple[Window, ...]) -> RawAggregates | None:
    """The window sums and the customer aggregates at `as_of` from the payments' Parquet
    files (see the module doc); None when this path cannot be exact for these payments."""
    rows = read_rows(files, as_of)
    if rows is None:
        return None
    return RawAggregates(window_table(rows, windows), *customer_tables(rows))


def read_rows(files: list[Path], as_of: dt.date) -> RawRows | None:
    """The payments with a UTC day in [D - 365, D), ids as indices into one party list."""
    cols = ["ts", "payer_id", "payee_id", "amount_minor", "kind", "category"]
    t = pq.read_table([str(f) for f in files], columns=cols, partitioning=None,
                      read_dictionary=["payer_id", "payee_id", "kind", "category"])
    if any(t[c].null_count for c in ("ts", "payer_id", "payee_id", "amount_minor", "kind")):
        return None  # SQL groups a null id as a party and compares a null kind as unknown: not here
    batches = t.to_batches()  # the columns' rows aligned batch by batch
    per_day = UNITS_PER_DAY[t.schema.field("ts").type.unit]
    d = (as_of - EPOCH).days
    keep, ago = [], []
    for b in batches:
        k = d - b["ts"].view(pa.int64()).to_numpy() // per_day  # floor division: the UTC day
        keep.append((k >= 1) & (k <= MAX_WINDOW_DAYS))
        ago.append(k[keep[-1]])
    amount = np.concatenate([np.zeros(0, np.int64)] + [b["amount_minor"].to_numpy()[m] for b, m in zip(batches, keep, strict=True)])
    # Every sum below is of at most all rows' |amounts|: within int64, and within float64's
    # exact integers for bincount, or this path is not taken.
    if amount.size and int(np.abs(amount).max()) * amount.size >= EXACT_FLOAT_SUM:
        return None
    parties, (payee, payer) = _codes(batches, ["payee_id", "payer_id"], keep)
    kind_values, (kind,) = _codes(batches, ["kind"], keep)
    category_values, (category,) = _codes(batches, ["category"], keep)
    essential = pc.is_in(category_values, value_set=pa.array(sorted(ESSENTIAL_CATEGORIES), pa.string()))
    # A null category has code -1: the last entry of the lookup, False.
    is_essential = np.append(essential.to_numpy(zero_copy_only=False), False)[category]

    def kind_in(values: tuple[str, ...]) -> np.ndarray:
        return pc.is_in(kind_values, value_set=pa.array(values, pa.string())).to_numpy(zero_copy_only=False)[kind]

    return RawRows(parties=parties, payee=payee, payer=payer, days_ago=np.concatenate(ago) if ago else np.zeros(0, np.int64), amount=amount,
                   kind_in=functools.cache(kind_in), essential=is_essential)


def _codes(batches: list[pa.RecordBatch], names: list[str], keep: list[np.ndarray]) -> tuple[pa.Array, list[np.ndarray]]:
    """Dictionary columns (read_dictionary) -> their values (one list for all the columns)
    and each column's kept rows as int64 indices into it, -1 for null: each batch's own
    dictionary is encoded once, not its rows."""
    dictionaries = [b[name].dictionary for name in names for b in batches]
    encoded = pc.dictionary_encode(pa.concat_arrays(dictionaries) if dictionaries else pa.array([], pa.string()))
    positions = encoded.indices.to_numpy().astype(np.int64)
    out, offset = [], 0
    for name in names:
        parts = []
        for b, m in zip(batches, keep, strict=True):
            c = b[name]
            lookup = np.append(positions[offset:offset + len(c.dictionary)], -1)  # index -1: null
            offset += len(c.dictionary)
            if c.null_count:
                local = np.where(c.is_valid().to_numpy(zero_copy_only=False), c.indices.fill_null(0).to_numpy(), -1)
            else:
                local = c.indices.to_numpy()
            parts.append(lookup[local[m]])
        out.append(np.concatenate(parts) if parts else np.zeros(0, np.int64))
    return encoded.dictionary, out


def window_table(r: RawRows, windows: tuple[Window, ...]) -> pa.Table:
    """`window_sums` rows: parties with a row of the 365 days matching one of the windows'
    measures; each window summed from dense party x bucket sums (one bincount per measure
    and side, the rows weighted by the measure's mask: cheaper than selecting them)."""
    parties_n = len(r.parties)
    cells_n = parties_n * BUCKETS_N
    bucket = (r.days_ago - 1) // MONTH_DAYS
    party = {"in": r.payee, "out": r.payer}
    cell = {side: p * BUCKETS_N + bucket for side, p in party.items()}
    amount = r.amount.astype(np.float64)  # exact: read_rows bounds every sum below 2**53
    matched = {side: np.zeros(len(r.amount), dtype=bool) for side in party}  # rows of some measure
    dense: dict[str, np.ndarray] = {}
    for name in measures_of(windows):
        m = MEASURE_ROWS[name]
        mask = m.mask(r)
        sides = ("in", "out") if m.side == "both" else (m.side,)
        for side in sides:
            matched[side] |= mask
        if m.value == "days":  # distinct days: a party x day mark, counted per bucket
            marks = np.zeros(parties_n * BUCKETS_N * MONTH_DAYS, dtype=bool)
            marks[(party[m.side] * (BUCKETS_N * MONTH_DAYS) + r.days_ago - 1)[mask]] = True
            dense[name] = marks.reshape(parties_n, BUCKETS_N, MONTH_DAYS).sum(axis=2, dtype=np.int64)
            continue
        weights = mask.astype(np.float64) if m.value == "count" else np.where(mask, amount, 0.0)
        total = np.zeros(cells_n, dtype=np.float64)
        for side in sides:
            total += np.bincount(cell[side], weights=-weights if m.value == "net" and side == "out" else weights,
                                 minlength=cells_n)
        dense[name] = total.astype(np.int64).reshape(parties_n, BUCKETS_N)
    present = np.zeros(parties_n, dtype=bool)
    for side, rows in matched.items():
        present[party[side][rows]] = True
    keep = np.flatnonzero(present)
    return windows_from_dense(r.parties.take(pa.array(keep)), {k: v[keep] for k, v in dense.items()}, windows)


def pair_order(payee: np.ndarray, payer: np.ndarray, parties_n: int) -> np.ndarray:
    """The permutation sorting the rows by (payee, payer): an LSD radix sort on 16-bit digits
    (numpy's stable sort of uint16 is a counting sort; measured 4x faster than argsort of
    int64 pair keys at 720k purchases)."""
    order = np.arange(len(payee))
    for ids in (payer, payee):  # least significant first
        for shift in range(0, max(parties_n - 1, 1).bit_length(), 16):
            digit = ((ids[order] >> shift) & 0xFFFF).astype(np.uint16)
            order = order[np.argsort(digit, kind="stable")]
    return order


def customer_tables(r: RawRows) -> tuple[pa.Table, pa.Table]:
    """payee_aggregates and payer_aggregates of pair_state from the purchases of the 365
    days: per (payee, payer) pair its newest and oldest day and its amount, the pairs sorted
    by payee (a pair has purchases on >= 2 days when its oldest and newest day differ)."""
    buy = _purchase(r)
    payee, payer, ago, amount = r.payee[buy], r.payer[buy], r.days_ago[buy], r.amount[buy]
    order = pair_order(payee, payer, len(r.parties))
    payee, payer, ago, amount = payee[order], payer[order], ago[order], amount[order]
    new_pair = np.r_[True, (payee[1:] != payee[:-1]) | (payer[1:] != payer[:-1])] if len(order) else buy[:0]
    starts = np.flatnonzero(new_pair)
    newest = np.minimum.reduceat(ago, starts) if starts.size else ago
    oldest = np.maximum.reduceat(ago, starts) if starts.size else ago
    amount = np.add.reduceat(amount, starts) if starts.size else amount
    payee, payer = payee[starts], payer[starts]
    recent = newest <= RECENT_DAYS
    # Pairs are sorted by payee: each payee's pairs are one run.
    firsts = np.flatnonzero(np.r_[True, payee[1:] != payee[:-1]]) if payee.size else starts

    def per_payee(values: np.ndarray, ufunc: np.ufunc = np.add) -> pa.Array:
        return pa.array(ufunc.reduceat(values, firsts) if firsts.size else values.astype(np.int64), pa.int64())

    payees = pa.table({
        "party_id": r.parties.take(pa.array(payee[firsts], pa.int64())),
        "cust_n_90d": per_payee(recent.astype(np.int64)),
        "cust_n_365d": per_payee(np.ones(payee.size, np.int64)),
        "cust_repeat_n_365d": per_payee((oldest != newest).astype(np.int64)),
        "cust_top_minor_365d": per_payee(amount, np.maximum),
        "cust_total_minor_365d": per_payee(amount),
    })
    assert tuple(payees.column_names[1:]) == PAYEE_AGGREGATES
    merchants = np.bincount(payer[recent], minlength=len(r.parties))
    with_recent = np.flatnonzero(merchants)
    payers = pa.table({"party_id": r.parties.take(pa.array(with_recent, pa.int64())),
                       "merchants_n_90d": pa.array(merchants[with_recent], pa.int64())})
    assert tuple(payers.column_names[1:]) == PAYER_AGGREGATES
    return payees, payers
