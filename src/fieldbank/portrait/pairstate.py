"""The incremental state's pair state in numpy (state.py): per (payee, payer) with a purchase
in [S - 365, S): days with a purchase, amount, last day; and the customer aggregates of
windows.py (payee_aggregates, payer_aggregates) per party row, kept up to date by deltas.

A pair is one int64 key, `payee_row << 32 | payer_row`, where a row is the party's row in the
state's window totals (stable: parties are only appended, a rebuild rewrites both).

A day changes ~27k of the 3.5M pairs of the 5M-payment lake, at random places, so the pairs
are kept as a *base* (sorted keys and their values, a memory-mapped file written only when
built or compacted) and a small *overlay* (sorted keys whose value differs from the base:
their current value, `days_n == 0` for a pair gone). An advance looks the day's pairs up in
both by binary search, rewrites only the overlay, and changes each aggregate by the touched
pairs' (new - old) contributions, plus the untouched pairs whose last day just left the
90-day window; a payee's top customer amount is recomputed from its pairs only when the pair
holding it went down. When the overlay outgrows `COMPACT_FRACTION` of the base they are merged
into a new base (one pass over the pairs, every ~2 weeks at 5M payments).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fieldbank.portrait.engine import one_chunk
from fieldbank.portrait.windows import PAYEE_AGGREGATES, PAYER_AGGREGATES

EPOCH_DAY = dt.date(1970, 1, 1)
ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1
SCHEMA = pa.schema([pa.field("key", pa.int64()), pa.field("days_n", pa.int32()),
                    pa.field("amount_minor", pa.int64()), pa.field("last_day", pa.int32())])
AGGREGATES = (*PAYEE_AGGREGATES, *PAYER_AGGREGATES)  # per party row, stored with the window totals
COMPACT_FRACTION = 0.125  # overlay rows / base rows above which the two are merged
COMPACT_MIN_ROWS = 50_000


def day_number(day: dt.date) -> int:
    return (day - EPOCH_DAY).days


def pair_keys(payee_row: np.ndarray, payer_row: np.ndarray) -> np.ndarray:
    """The pairs' int64 keys from the two parties' rows (non-negative int32)."""
    assert payee_row.size == 0 or (payee_row.min() >= 0 and payer_row.min() >= 0), "a pair's party has no row"
    return (payee_row.astype(np.int64) << ROW_BITS) | payer_row.astype(np.int64)


@dataclass
class Pairs:
    """Sorted unique keys and per key days_n, amount_minor, last_day (days since 1970)."""

    key: np.ndarray
    days_n: np.ndarray
    amount_minor: np.ndarray
    last_day: np.ndarray

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32))

    @classmethod
    def from_table(cls, t: pa.Table) -> Pairs:
        """Read-only views of a memory-mapped file are fine: nothing writes into them."""
        return cls(*(one_chunk(t[name]).to_numpy() for name in SCHEMA.names))

    def table(self) -> pa.Table:
        return pa.table([self.key, self.days_n, self.amount_minor, self.last_day], schema=SCHEMA)

    def find(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, position) of each key."""
        pos = np.searchsorted(self.key, key)
        found = pos < self.key.size
        found[found] = self.key[pos[found]] == key[found]
        return found, pos


@dataclass
class PairState:
    """The pairs as base + overlay (see the module doc)."""

    base: Pairs
    overlay: Pairs

    @classmethod
    def from_columns(cls, key: np.ndarray, days_n: np.ndarray, amount_minor: np.ndarray,
                     last_day: np.ndarray) -> PairState:
        """From unsorted rows with unique keys (the build): all in the base."""
        order = np.argsort(key, kind="stable")
        key = key[order]
        assert key.size < 2 or bool(np.all(key[1:] > key[:-1])), "duplicate pairs"
        base = Pairs(key, days_n[order].astype(np.int32), amount_minor[order].astype(np.int64),
                     last_day[order].astype(np.int32))
        return cls(base, Pairs.empty())

    def current(self) -> Pairs:
        """The pairs now (base with the overlay applied, pairs gone dropped): one pass over all."""
        in_base, pos = self.base.find(self.overlay.key)
        keep = np.ones(self.base.key.size, dtype=bool)
        keep[pos[in_base]] = False  # the overlay holds these pairs' values
        live = self.overlay.days_n > 0
        # Both sides sorted: the overlay's live pairs are inserted in place (no sort of all pairs).
        ins = np.searchsorted(self.base.key[keep], self.overlay.key[live])
        return Pairs(*(np.insert(getattr(self.base, c)[keep], ins, getattr(self.overlay, c)[live])
                       for c in ("key", "days_n", "amount_minor", "last_day")))

    def needs_compaction(self) -> bool:
        return self.overlay.key.size > max(COMPACT_MIN_ROWS, COMPACT_FRACTION * self.base.key.size)

    def compact(self) -> None:
        self.base, self.overlay = self.current(), Pairs.empty()

    def lookup(self, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Current (days_n, amount_minor, last_day) of each key; 0, 0, -1 for a pair not held."""
        days = np.zeros(key.size, np.int32)
        amount = np.zeros(key.size, np.int64)
        last = np.full(key.size, -1, np.int32)
        in_ov, ov_pos = self.overlay.find(key)
        in_base, base_pos = self.base.find(key)
        in_base &= ~in_ov
        for found, pos, p in ((in_base, base_pos, self.base), (in_ov, ov_pos, self.overlay)):
            at = pos[found]
            days[found], amount[found], last[found] = p.days_n[at], p.amount_minor[at], p.last_day[at]
        last[days == 0] = -1
        return days, amount, last

    def apply(self, key: np.ndarray, d_days: np.ndarray, d_amount: np.ndarray, entered: np.ndarray,
              new_day: dt.date, agg: dict[str, np.ndarray]) -> None:
        """One day's changes (unique keys) for the as-of date new_day + 1: days and amount
        change by the deltas, a pair with a purchase on `new_day` (`entered`) gets it as its
        last day, a pair at 0 days is gone (its last day was the day leaving the window, so the
        others' last days stay exact); `agg` (AGGREGATES, per party row) changes with them."""
        order = np.argsort(key)
        key, d_days, d_amount, entered = key[order], d_days[order], d_amount[order], entered[order]
        old_days, old_amount, old_last = self.lookup(key)
        days = old_days + d_days.astype(np.int32)
        amount = old_amount + d_amount
        last = np.where(entered, np.int32(day_number(new_day)), old_last)
        bad = (days < 0) | (amount < 0) | ((days == 0) != (amount == 0)) | ((old_days == 0) & ~entered)
        assert not bad.any(), f"pair state and rollups disagree for {int(bad.sum())} pairs: rebuild the state"
        # Untouched pairs whose last day leaves the 90-day window (read before the overlay changes).
        old_cut, new_cut = day_number(new_day) - 90, day_number(new_day) + 1 - 90  # recent: last_day >= cut
        left = self._untouched_with_last_day(old_cut, key)
        # The overlay takes the new values (days_n 0: gone).
        ov = self.overlay
        in_ov, pos = ov.find(key)
        cols = [ov.key.copy(), ov.days_n.copy(), ov.amount_minor.copy(), ov.last_day.copy()]
        for col, values in zip(cols[1:], (days, amount, last), strict=True):
            col[pos[in_ov]] = values[in_ov]
        new = ~in_ov
        ins = np.searchsorted(cols[0], key[new])
        self.overlay = Pairs(*(np.insert(col, ins, values[new]) for col, values in zip(
            cols, (key, days, amount, last), strict=True)))
        # The aggregates change by the touched pairs' (new - old) contributions.
        payee, payer = key >> ROW_BITS, key & ROW_MASK
        _add(agg["cust_n_365d"], payee, (days > 0).astype(np.int64) - (old_days > 0))
        _add(agg["cust_repeat_n_365d"], payee, (days >= 2).astype(np.int64) - (old_days >= 2))
        _add(agg["cust_total_minor_365d"], payee, amount - old_amount)
        recent = ((days > 0) & (last >= new_cut)).astype(np.int64) - ((old_days > 0) & (old_last >= old_cut))
        _add(agg["cust_n_90d"], np.concatenate([payee, left >> ROW_BITS]),
             np.concatenate([recent, np.full(left.size, -1, np.int64)]))
        _add(agg["merchants_n_90d"], np.concatenate([payer, left & ROW_MASK]),
             np.concatenate([recent, np.full(left.size, -1, np.int64)]))
        # Top customer amount: recomputed for payees whose top pair went down, else the max.
        top = agg["cust_top_minor_365d"]
        stale = np.unique(payee[(amount < old_amount) & (old_amount >= top[payee])])
        live = days > 0
        np.maximum.at(top, payee[live], amount[live])
        if stale.size:
            top[stale] = self._top_amounts(stale)

    def _untouched_with_last_day(self, day_num: int, touched: np.ndarray) -> np.ndarray:
        """Keys of the pairs held whose last day is `day_num`, not among `touched`."""
        base_keys = self.base.key[self.base.last_day == day_num]
        in_ov, _ = self.overlay.find(base_keys)
        ov = self.overlay
        keys = np.concatenate([base_keys[~in_ov], ov.key[(ov.last_day == day_num) & (ov.days_n > 0)]])
        return keys[~np.isin(keys, touched)]

    def _top_amounts(self, payees: np.ndarray) -> np.ndarray:
        """The largest amount among each payee's pairs held now (0 if none)."""
        out = np.zeros(payees.size, np.int64)
        for p in (self.base, self.overlay):
            lo = np.searchsorted(p.key, payees << ROW_BITS)
            hi = np.searchsorted(p.key, (payees + 1) << ROW_BITS)
            idx, group = _ranges(lo, hi)
            amount = np.where(p.days_n[idx] > 0, p.amount_minor[idx], 0)
            if p is self.base:  # a base pair with an overlay row: the overlay holds its value
                amount[self.overlay.find(p.key[idx])[0]] = 0
            np.maximum.at(out, group, amount)
        return out


def _add(col: np.ndarray, rows: np.ndarray, delta: np.ndarray) -> None:
    """col[rows] += delta, rows repeated (exact int64; np.bincount would sum in float64)."""
    np.add.at(col, rows, delta.astype(np.int64))


def _ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positions of the ranges [lo[i], hi[i]) one after the other, and each one's i."""
    lengths = hi - lo
    group = np.repeat(np.arange(lo.size), lengths)
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum())) - np.repeat(starts, lengths) + np.repeat(lo, lengths), group


def full_aggregates(pairs: Pairs, parties_n: int, as_of: dt.date) -> dict[str, np.ndarray]:
    """AGGREGATES per party row (windows.py's definitions) from all the pairs (the build)."""
    live = pairs.days_n > 0
    return customer_aggregates(payee=pairs.key[live] >> ROW_BITS, payer=pairs.key[live] & ROW_MASK,
                               amount=pairs.amount_minor[live], repeat=pairs.days_n[live] >= 2,
                               recent=pairs.last_day[live] >= day_number(as_of) - 90,  # last_day >= D - 90
                               parties_n=parties_n)


def customer_aggregates(payee: np.ndarray, payer: np.ndarray, amount: np.ndarray, repeat: np.ndarray,
                        recent: np.ndarray, parties_n: int) -> dict[str, np.ndarray]:
    """AGGREGATES per party row from one entry per (payee, payer) pair with a purchase in the
    365 days, sorted by payee: its amount, whether it has purchases on 2+ days (`repeat`) and
    one in the last 90 days (`recent`)."""
    payee, payer = payee.astype(np.int64), payer.astype(np.int64)
    assert payee.size < 2 or bool(np.all(payee[1:] >= payee[:-1])), "pairs not sorted by payee"
    out = {
        "cust_n_90d": np.bincount(payee[recent], minlength=parties_n),
        "cust_n_365d": np.bincount(payee, minlength=parties_n),
        "cust_repeat_n_365d": np.bincount(payee[repeat], minlength=parties_n),
        "cust_top_minor_365d": np.zeros(parties_n, np.int64),
        "cust_total_minor_365d": np.zeros(parties_n, np.int64),
        "merchants_n_90d": np.bincount(payer[recent], minlength=parties_n),
    }
    if payee.size:  # each payee's pairs are one run
        starts = np.flatnonzero(np.concatenate([[True], payee[1:] != payee[:-1]]))
        out["cust_top_minor_365d"][payee[starts]] = np.maximum.reduceat(amount, starts)
        out["cust_total_minor_365d"][payee[starts]] = np.add.reduceat(amount, starts)
    return {name: out[name].astype(np.int64) for name in AGGREGATES}


def aggregate_tables(parties: pa.Array, agg: dict[str, np.ndarray]) -> tuple[pa.Table, pa.Table]:
    """(payee_aggregates, payer_aggregates) as windows.py makes them: one row per party with a
    customer (resp. a merchant in the last 90 days); `agg` per row of `parties`."""
    n = len(parties)
    payee_rows = np.flatnonzero(agg["cust_n_365d"][:n] > 0)
    payees = pa.table({"party_id": parties.take(pa.array(payee_rows)),
                       **{name: pa.array(agg[name][payee_rows]) for name in PAYEE_AGGREGATES}})
    payer_rows = np.flatnonzero(agg["merchants_n_90d"][:n] > 0)
    payers = pa.table({"party_id": parties.take(pa.array(payer_rows)),
                       **{name: pa.array(agg[name][payer_rows]) for name in PAYER_AGGREGATES}})
    return payees, payers
