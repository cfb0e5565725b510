"""The incremental state's pair state in numpy (state.py): per (payee, payer) with a purchase
in [S - 365, S): days with a purchase, amount, last day, and the customer aggregates
(windows.payee_aggregates / payer_aggregates) computed from it.

A pair is one int64 key, `payee_row << 32 | payer_row`, where a row is the party's row in the
state's window totals (stable: parties are only appended, a rebuild rewrites both). The keys
are kept sorted, so a day's ~27k changed pairs are found by a binary search instead of a
join that scans the 3.5M pairs of the 5M-payment lake in DuckDB, and a payee's pairs are
contiguous (its top customer amount is one `np.maximum.reduceat`). The aggregates are
recomputed from the arrays on every run: a few passes over 3.5M numbers, exact integers,
and the same definitions as windows.py (no deltas to get wrong).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fieldbank.portrait.windows import PAYEE_AGGREGATES, PAYER_AGGREGATES

EPOCH_DAY = dt.date(1970, 1, 1)
ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
SCHEMA = pa.schema([pa.field("key", pa.int64()), pa.field("days_n", pa.int32()),
                    pa.field("amount_minor", pa.int64()), pa.field("last_day", pa.int32())])


def day_number(day: dt.date) -> int:
    return (day - EPOCH_DAY).days


def pair_keys(payee_row: np.ndarray, payer_row: np.ndarray) -> np.ndarray:
    """The pairs' int64 keys from the two parties' rows (non-negative int32)."""
    assert payee_row.size == 0 or (payee_row.min() >= 0 and payer_row.min() >= 0), "a pair's party has no row"
    return (payee_row.astype(np.int64) << ROW_BITS) | payer_row.astype(np.int64)


@dataclass
class PairState:
    """Sorted unique keys and, per key, days_n (>= 1), amount_minor, last_day (days since
    1970-01-01)."""

    key: np.ndarray
    days_n: np.ndarray
    amount_minor: np.ndarray
    last_day: np.ndarray

    @classmethod
    def from_columns(cls, key: np.ndarray, days_n: np.ndarray, amount_minor: np.ndarray,
                     last_day: np.ndarray) -> PairState:
        """From unsorted rows with unique keys (the build)."""
        order = np.argsort(key, kind="stable")
        key = key[order]
        assert key.size < 2 or bool(np.all(key[1:] > key[:-1])), "duplicate pairs"
        return cls(key, days_n[order].astype(np.int32), amount_minor[order].astype(np.int64),
                   last_day[order].astype(np.int32))

    @classmethod
    def from_table(cls, t: pa.Table) -> PairState:
        """From a `table()` (read-only views of a memory-mapped file are fine: `apply` copies)."""
        cols = [t[name].combine_chunks().to_numpy() for name in SCHEMA.names]
        return cls(*cols)

    def table(self) -> pa.Table:
        return pa.table([self.key, self.days_n, self.amount_minor, self.last_day], schema=SCHEMA)

    def apply(self, key: np.ndarray, d_days: np.ndarray, d_amount: np.ndarray, entered: np.ndarray,
              new_day: dt.date) -> None:
        """One day's changes (unique keys): days and amount change by the deltas, a pair with a
        purchase on `new_day` (`entered`) gets it as its last day, a pair at 0 days is dropped
        (its last day was the day leaving the window, so the others' last days stay exact)."""
        n = self.key.size
        pos = np.searchsorted(self.key, key)
        found = pos < n
        found[found] = self.key[pos[found]] == key[found]
        days, amount, last = self.days_n.copy(), self.amount_minor.copy(), self.last_day.copy()
        at = pos[found]
        days[at] += d_days[found].astype(np.int32)
        amount[at] += d_amount[found]
        last[at] = np.where(entered[found], day_number(new_day), last[at])
        bad = (days[at] < 0) | (amount[at] < 0) | ((days[at] == 0) != (amount[at] == 0))
        assert not bad.any(), f"pair state went negative for {int(bad.sum())} pairs: state and rollups disagree"
        new = ~found
        assert bool(np.all(entered[new] & (d_days[new] > 0) & (d_amount[new] >= 0))), \
            "a pair leaving the window is not in the state: state and rollups disagree"
        gone = at[days[at] == 0]
        kept_key = np.delete(self.key, gone)
        order = np.argsort(key[new])
        new_key = key[new][order]
        ins = np.searchsorted(kept_key, new_key)
        self.key = np.insert(kept_key, ins, new_key)
        self.days_n = np.insert(np.delete(days, gone), ins, d_days[new][order].astype(np.int32))
        self.amount_minor = np.insert(np.delete(amount, gone), ins, d_amount[new][order])
        self.last_day = np.insert(np.delete(last, gone), ins, np.int32(day_number(new_day)))

    def aggregates(self, parties: pa.Array, as_of: dt.date) -> tuple[pa.Table, pa.Table]:
        """(payee_aggregates, payer_aggregates) as of `as_of`: windows.py's definitions, one row
        per party with a customer (resp. a merchant in the last 90 days); `parties` are the
        window totals' party ids (a key's rows index them)."""
        parties_n = len(parties)
        payee = (self.key >> ROW_BITS).astype(np.int64)
        payer = (self.key & ROW_MASK).astype(np.int64)
        recent = self.last_day >= day_number(as_of - dt.timedelta(days=90))  # last_day >= D - 90
        n_365 = np.bincount(payee, minlength=parties_n)
        n_90 = np.bincount(payee[recent], minlength=parties_n)
        repeat = np.bincount(payee[self.days_n >= 2], minlength=parties_n)
        top = np.zeros(parties_n, np.int64)
        total = np.zeros(parties_n, np.int64)
        if payee.size:  # keys are sorted, so each payee's pairs are one run
            starts = np.flatnonzero(np.concatenate([[True], payee[1:] != payee[:-1]]))
            top[payee[starts]] = np.maximum.reduceat(self.amount_minor, starts)
            total[payee[starts]] = np.add.reduceat(self.amount_minor, starts)
        merchants = np.bincount(payer[recent], minlength=parties_n)
        payee_rows = np.flatnonzero(n_365 > 0)
        payees = pa.table({"party_id": parties.take(pa.array(payee_rows)),
                           **dict(zip(PAYEE_AGGREGATES, (pa.array(c[payee_rows].astype(np.int64)) for c in (
                               n_90, n_365, repeat, top, total)), strict=True))})
        payer_rows = np.flatnonzero(merchants > 0)
        payers = pa.table({"party_id": parties.take(pa.array(payer_rows)),
                           PAYER_AGGREGATES[0]: pa.array(merchants[payer_rows].astype(np.int64))})
        return payees, payers
