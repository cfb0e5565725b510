"""The payment aggregates of the raw-payments path (no rollups) on DuckDB, in numpy.

What `windows.window_sums` and `payee_aggregates` / `payer_aggregates` of `pair_state`
compute from the raw payments, with the same rows and int64 values (row order not defined),
read straight from the Parquet files. Measured at 1M payments (docs/portrait.md, session 7):
DuckDB's hash group-bys of the 2M party-side rows into 232k (party, bucket) groups of 9 sums,
and of the 720k purchases into 687k (payee, payer) pairs, spend most of their time missing
the cache on wide per-group states; here every party id is read as a Parquet dictionary
index, mapped once to a small integer, each measure is one `bincount` into a dense
party x bucket array (2 MB), and the pairs are runs of the purchases radix-sorted by
(payee, payer).

The Ibis definitions in windows.py stay the definitions: `MEASURE_ROWS` restates each
measure's condition over the raw columns, and the tests check every column against them.
`raw_payment_aggregates` returns None when an input falls outside what this path handles
exactly (a null id or kind, amounts whose float64 sums could pass 2**53, no payments): the
caller then runs the SQL path.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank.contract import ESSENTIAL_CATEGORIES
from fieldbank.portrait.pairstate import aggregate_tables, customer_aggregates
from fieldbank.portrait.windows import (
    BUCKETS_N,
    INCOME_KINDS,
    INFLOW_KINDS,
    MAX_WINDOW_DAYS,
    MEASURES,
    MONTH_DAYS,
    Window,
    measures_of,
    windows_from_dense,
)

EPOCH = dt.date(1970, 1, 1)
RECENT_DAYS = 90  # payee_aggregates' cust_n_90d and payer_aggregates' window
# float64 adds integers exactly while every partial sum stays below 2**53 (bincount's weights).
EXACT_FLOAT_SUM = 2**53
READ_THREADS = 2  # the Parquet files read at once
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
    # The two are independent and numpy releases the GIL in most of them: side by side
    # (measured 115-139 ms against 158-161 ms one after the other, 1M payments, load ~2).
    with ThreadPoolExecutor(max_workers=1) as pool:
        customers = pool.submit(customer_tables, rows)
        window_rows = window_table(rows, windows)
        payees, payers = customers.result()
    return RawAggregates(window_rows, payees, payers)


COLUMNS = ("ts", "payer_id", "payee_id", "amount_minor", "kind", "category")
DICTIONARY_COLUMNS = ("payee_id", "payer_id", "kind", "category")  # read as dictionary indices
NOT_NULL = ("ts", "payer_id", "payee_id", "amount_minor", "kind")


@dataclass(frozen=True)
class _Batch:
    """One record batch's payments of the 365 days before D."""

    days_ago: np.ndarray
    amount: np.ndarray
    dictionaries: dict[str, pa.Array]  # the batch's own dictionary per DICTIONARY_COLUMNS
    indices: dict[str, np.ndarray]  # the kept rows' indices into it, -1 for null


def _read_file(path: Path, as_of: dt.date) -> list[_Batch] | None:
    """One Parquet file's payments of the 365 days (None if a NOT_NULL column has a null)."""
    t = pq.ParquetFile(path, read_dictionary=DICTIONARY_COLUMNS).read(columns=list(COLUMNS), use_threads=False)
    d = (as_of - EPOCH).days
    out = []
    for b in t.to_batches():  # the columns' rows aligned batch by batch
        if any(b[c].null_count for c in NOT_NULL):
            return None  # SQL groups a null id as a party and compares a null kind as unknown: not here
        ago = d - b["ts"].view(pa.int64()).to_numpy() // UNITS_PER_DAY[b.schema.field("ts").type.unit]  # UTC day
        keep = (ago >= 1) & (ago <= MAX_WINDOW_DAYS)
        indices = {}
        for name in DICTIONARY_COLUMNS:
            c = b[name]
            if c.null_count:
                local = np.where(c.is_valid().to_numpy(zero_copy_only=False), c.indices.fill_null(0).to_numpy(), -1)
            else:
                local = c.indices.to_numpy()
            indices[name] = local[keep]
        out.append(_Batch(ago[keep], b["amount_minor"].to_numpy()[keep],
                          {name: b[name].dictionary for name in DICTIONARY_COLUMNS}, indices))
    return out


def read_rows(files: list[Path], as_of: dt.date) -> RawRows | None:
    """The payments with a UTC day in [D - 365, D), ids as indices into one party list. The
    files are read and filtered two at a time (Arrow and numpy release the GIL)."""
    if not files:
        return None
    with ThreadPoolExecutor(max_workers=min(len(files), READ_THREADS)) as pool:
        per_file = list(pool.map(lambda f: _read_file(f, as_of), files))
    if any(f is None for f in per_file):
        return None
    batches = [b for f in per_file if f is not None for b in f]
    if not batches:
        return None
    amount = np.concatenate([b.amount for b in batches])
    # Every sum below is of at most all rows' |amounts|: within int64, and within float64's
    # exact integers for bincount, or this path is not taken.
    if amount.size and int(np.abs(amount).max()) * amount.size >= EXACT_FLOAT_SUM:
        return None
    parties, (payee, payer) = _codes(batches, ["payee_id", "payer_id"])
    kind_values, (kind,) = _codes(batches, ["kind"])
    category_values, (category,) = _codes(batches, ["category"])
    essential = pc.is_in(category_values, value_set=pa.array(sorted(ESSENTIAL_CATEGORIES), pa.string()))
    # A null category has code -1: the last entry of the lookup, False.
    is_essential = np.append(essential.to_numpy(zero_copy_only=False), False)[category]

    def kind_in(values: tuple[str, ...]) -> np.ndarray:
        return pc.is_in(kind_values, value_set=pa.array(values, pa.string())).to_numpy(zero_copy_only=False)[kind]

    return RawRows(parties=parties, payee=payee, payer=payer, days_ago=np.concatenate([b.days_ago for b in batches]),
                   amount=amount, kind_in=functools.cache(kind_in), essential=is_essential)


def _codes(batches: list[_Batch], names: list[str]) -> tuple[pa.Array, list[np.ndarray]]:
    """Dictionary columns -> their values (one list for all the columns) and each column's
    rows as int64 indices into it (-1 for null): each batch's dictionary is encoded once
    (20k ids), not its rows."""
    encoded = pc.dictionary_encode(pa.concat_arrays([b.dictionaries[name] for name in names for b in batches]))
    positions = encoded.indices.to_numpy().astype(np.int64)
    out, offset = [], 0
    for name in names:
        parts = []
        for b in batches:
            n = len(b.dictionaries[name])
            lookup = np.append(positions[offset:offset + n], -1)  # index -1 (null) -> -1
            offset += n
            parts.append(lookup[b.indices[name]])
        out.append(np.concatenate(parts))
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
            marks = np.zeros(parties_n * BUCKETS_N * MONTH_DAYS, dtype=np.uint8)
            marks[(party[m.side] * (BUCKETS_N * MONTH_DAYS) + r.days_ago - 1)[mask]] = 1
            dense[name] = marks.reshape(parties_n, BUCKETS_N, MONTH_DAYS).sum(axis=2, dtype=np.uint8)
            continue
        weights = mask if m.value == "count" else amount * mask
        total = np.bincount(cell[sides[0]], weights=weights, minlength=cells_n)
        if len(sides) == 2:  # net: + on the payee's side, - on the payer's
            total -= np.bincount(cell[sides[1]], weights=weights, minlength=cells_n)
        dense[name] = total.reshape(parties_n, BUCKETS_N)
    present = np.zeros(parties_n, dtype=bool)
    for side, rows in matched.items():
        present |= np.bincount(party[side], weights=rows, minlength=parties_n) > 0
    table = windows_from_dense(r.parties, dense, windows)
    return table if present.all() else table.filter(pa.array(present))


def pair_order(payee: np.ndarray, payer: np.ndarray, parties_n: int, rows: np.ndarray | None = None) -> np.ndarray:
    """The indices of `rows` (default all) sorted by (payee, payer): an LSD radix sort on
    16-bit digits (numpy's stable sort of uint16 is a counting sort; measured 4x faster than
    argsort of int64 pair keys at 720k purchases)."""
    order = np.arange(len(payee)) if rows is None else rows
    for ids in (payer, payee):  # least significant first
        for shift in range(0, max(parties_n - 1, 1).bit_length(), 16):
            digit = ((ids[order] >> shift) & 0xFFFF).astype(np.uint16)
            order = order[np.argsort(digit, kind="stable")]
    return order


def customer_tables(r: RawRows) -> tuple[pa.Table, pa.Table]:
    """payee_aggregates and payer_aggregates of pair_state from the purchases of the 365
    days: the purchases sorted by (payee, payer) are runs, one per pair, with its newest and
    oldest day and its amount (a pair has purchases on >= 2 days when those two days differ);
    the aggregates are then pairstate's, as the incremental state computes them."""
    order = pair_order(r.payee, r.payer, len(r.parties), np.flatnonzero(_purchase(r)))
    payee, payer, ago, amount = r.payee[order], r.payer[order], r.days_ago[order], r.amount[order]
    if order.size:
        starts = np.flatnonzero(np.r_[True, (payee[1:] != payee[:-1]) | (payer[1:] != payer[:-1])])
        newest, oldest = np.minimum.reduceat(ago, starts), np.maximum.reduceat(ago, starts)
        payee, payer, amount = payee[starts], payer[starts], np.add.reduceat(amount, starts)
    else:  # no purchases: every array is empty
        newest = oldest = ago
    agg = customer_aggregates(payee=payee, payer=payer, amount=amount, repeat=oldest != newest,
                              recent=newest <= RECENT_DAYS, parties_n=len(r.parties))
    return aggregate_tables(r.parties, agg)
