"""Payment windows: every payment feature is a function of per-party window sums and of
per-(payee, payer) customer aggregates. This module defines both once, so the full path
(sums over the rollups, any engine) and the incremental path (running totals kept in
`portrait/state.py`, DuckDB) feed the families' `finish` functions the same numbers.

- A *measure* is a per-party, per-day quantity read from the `party_day` rollup: a sum of
  `amount_minor` or `n_payments` over the rows matching a condition, or (`days`) 1 if any row
  matches that day. Every measure is additive over days, so a window sum can be kept as a
  running total: add the day entering the window, subtract the day leaving it.
- A *window* is a measure summed over the days [D - from_days_ago, D - to_days_ago).
- *Customer aggregates* come from the `pair_day` rollup (purchases, payee x payer x day).

Window sums are always zero-filled (a party with no rows in a window has 0), so the full and
the incremental path agree on nulls too; the families turn empty denominators into nulls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fieldbank.contract import ESSENTIAL_CATEGORIES
from fieldbank.portrait.engine import duckdb_sql
from fieldbank.portrait.inputs import AsOf, Inputs

MONTHS_N = 12  # "monthly" statistics use 12 months of 30 days: the 360 days before D
MONTH_DAYS = 30
MAX_WINDOW_DAYS = 365  # no payment feature looks further back than this
INCOME_KINDS = ("wage", "harvest_sale")
INFLOW_KINDS = ("purchase", "wage", "harvest_sale")


@dataclass(frozen=True)
class Measure:
    """A per-party per-day quantity of the party_day rollup (see module doc)."""

    name: str
    where: Callable[[ir.Table], ir.BooleanValue]
    value: Callable[[ir.Table], ir.IntegerValue] | None  # None: 1 if any row matches that day

    def day_value(self, r: ir.Table) -> ir.IntegerValue:
        """The measure of one party-day (an aggregate over that party-day's rollup rows)."""
        if self.value is None:
            return r.day.nunique(where=self.where(r)).cast("int64")
        return self.value(r).sum(where=self.where(r)).cast("int64")


def _in(r: ir.Table) -> ir.BooleanValue:
    return r.direction == "in"


def _out(r: ir.Table) -> ir.BooleanValue:
    return r.direction == "out"


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure("sales_minor", lambda r: _in(r) & (r.kind == "purchase"), lambda r: r.amount_minor),
        Measure("sales_n", lambda r: _in(r) & (r.kind == "purchase"), lambda r: r.n_payments),
        Measure("sales_days", lambda r: _in(r) & (r.kind == "purchase"), None),
        Measure("refunds_out_minor", lambda r: _out(r) & (r.kind == "refund"), lambda r: r.amount_minor),
        Measure("spend_minor", lambda r: _out(r) & (r.kind == "purchase"), lambda r: r.amount_minor),
        Measure("essentials_minor",
                lambda r: _out(r) & (r.kind == "purchase") & r.category.isin(sorted(ESSENTIAL_CATEGORIES)),
                lambda r: r.amount_minor),
        Measure("income_minor", lambda r: _in(r) & r.kind.isin(INCOME_KINDS), lambda r: r.amount_minor),
        Measure("inflow_minor", lambda r: _in(r) & r.kind.isin(INFLOW_KINDS), lambda r: r.amount_minor),
        Measure("net_minor", lambda r: r.amount_minor > 0,  # every row (amounts are > 0 by contract)
                lambda r: ibis.ifelse(_in(r), r.amount_minor, -r.amount_minor)),
    )
}


@dataclass(frozen=True)
class Window:
    """`measure` summed over the days [D - from_days_ago, D - to_days_ago)."""

    name: str
    measure: str
    from_days_ago: int
    to_days_ago: int = 0

    def __post_init__(self) -> None:
        assert self.measure in MEASURES, f"{self.name}: unknown measure {self.measure!r}"
        assert MAX_WINDOW_DAYS >= self.from_days_ago > self.to_days_ago >= 0, self
        # Windows are unions of 30-day buckets (bucket 12 = days 361-365 back), see window_sums.
        for edge in (self.from_days_ago, self.to_days_ago):
            assert edge == MAX_WINDOW_DAYS or edge % MONTH_DAYS == 0, f"{self.name}: edge {edge} not on a bucket"


def monthly(prefix: str, measure: str) -> tuple[Window, ...]:
    """`<prefix>_m0` (the last 30 days) ... `<prefix>_m11` (330-360 days ago)."""
    return tuple(Window(f"{prefix}_m{k}", measure, MONTH_DAYS * (k + 1), MONTH_DAYS * k) for k in range(MONTHS_N))


def window_sums(party_day: ir.Table, a: AsOf, windows: tuple[Window, ...]) -> ir.Table:
    """party_id + one zero-filled int64 column per window, for parties with any matching row in
    the last 365 days. One pass over the rollup: party x 30-day bucket first (few rows), then
    each window is a range of buckets (days never straddle buckets, so `days` measures add up)."""
    assert windows and len({w.name for w in windows}) == len(windows)
    measures = [MEASURES[m] for m in dict.fromkeys(w.measure for w in windows)]
    r = party_day.filter(party_day.day < a.date, party_day.day >= a.start_date(MAX_WINDOW_DAYS))
    keep = measures[0].where(r)
    for m in measures[1:]:
        keep = keep | m.where(r)
    r = r.filter(keep)
    r = r.mutate(bucket=((a.date.delta(r.day, unit="day") - 1) // MONTH_DAYS).cast("int64"))
    b = r.group_by("party_id", "bucket").aggregate(**{m.name: m.day_value(r) for m in measures})
    sums = {
        w.name: b[w.measure].sum(
            where=(b.bucket >= _bucket_of(w.to_days_ago + 1)) & (b.bucket <= _bucket_of(w.from_days_ago))
        ).fill_null(0).cast("int64")
        for w in windows
    }
    return b.group_by("party_id").aggregate(**sums)


BUCKETS_N = (MAX_WINDOW_DAYS - 1) // MONTH_DAYS + 1  # 13: buckets 0-11 are the months, 12 = days 361-365
assert MONTH_DAYS <= 62, "a bucket's days must fit one int64 bit mask (bucket_sums)"


@ibis.udf.scalar.builtin(name="bit_count")
def _bit_count(x: int) -> int:  # DuckDB's popcount (bucket_sums runs on DuckDB only)
    ...


def bucket_sums(party_day: ir.Table, a: AsOf, measures: tuple[str, ...]) -> ir.Table:
    """DuckDB: party_id, bucket (the 30-day bucket of window_sums), one column per measure,
    summed over the bucket's rows (null when none matches); the rows as window_sums keeps them.

    The same numbers as window_sums' per-bucket step, written for DuckDB's hash aggregate
    (measured at 1M raw payments, docs/portrait.md session 6): a `days` measure is a bit mask
    of the bucket's days (bit k: k days after the bucket's newest day) OR-ed and counted,
    instead of a COUNT(DISTINCT day), which makes DuckDB materialize its input and group it
    twice; a conditional sum is SUM(CASE ...) instead of SUM(...) FILTER (...)."""
    assert measures and len(set(measures)) == len(measures)
    ms = [MEASURES[m] for m in measures]
    r = party_day.filter(party_day.day < a.date, party_day.day >= a.start_date(MAX_WINDOW_DAYS))
    keep = ms[0].where(r)
    for m in ms[1:]:
        keep = keep | m.where(r)
    r = r.filter(keep)
    days_ago = a.date.delta(r.day, unit="day")  # 1 = the day before D
    r = r.mutate(bucket=((days_ago - 1) // MONTH_DAYS).cast("int64"),
                 day_bit=ibis.literal(1, type="int64") << ((days_ago - 1) % MONTH_DAYS).cast("int64"))

    def bucket_value(m: Measure) -> ir.IntegerValue:
        if m.value is None:
            return _bit_count(ibis.ifelse(m.where(r), r.day_bit, ibis.null("int64")).bit_or()).cast("int64")
        return ibis.ifelse(m.where(r), m.value(r), ibis.null("int64")).sum().cast("int64")

    return r.group_by("party_id", "bucket").aggregate(**{m.name: bucket_value(m) for m in ms})


def window_sums_arrow(con: ibis.BaseBackend, party_day: ir.Table, a: AsOf, windows: tuple[Window, ...]) -> pa.Table:
    """DuckDB: what `window_sums` computes (same rows, columns and int64 values; row order
    not defined), with the bucket step in DuckDB (`bucket_sums`) and the windows, ranges of
    buckets, summed in numpy: DuckDB's 59 conditional sums per party cost more than the
    whole bucket step (0.65 of 1.2 CPU-s at 1M raw payments)."""
    b = con.con.sql(duckdb_sql(con, bucket_sums(party_day, a, measures_of(windows)))).to_arrow_table()  # noqa: SLF001
    return windows_from_buckets(b, windows)


def measures_of(windows: tuple[Window, ...]) -> tuple[str, ...]:
    """The measures the windows sum, each once, in the windows' order."""
    return tuple(dict.fromkeys(w.measure for w in windows))


def windows_from_buckets(b: pa.Table, windows: tuple[Window, ...]) -> pa.Table:
    """party_id + one int64 column per window, from `bucket_sums` rows (see window_sums_arrow)."""
    assert windows and len({w.name for w in windows}) == len(windows)
    ids = pc.dictionary_encode(b["party_id"].combine_chunks())
    row = ids.indices.to_numpy().astype(np.int64)  # the party's row in the output
    bucket = b["bucket"].to_numpy()
    assert bucket.size == 0 or (bucket.min() >= 0 and bucket.max() < BUCKETS_N), "bucket out of range"
    parties_n = len(ids.dictionary)
    dense: dict[str, np.ndarray] = {}
    for m in measures_of(windows):  # party x bucket; each (party, bucket) is one row of b
        d = np.zeros((parties_n, BUCKETS_N), dtype=np.int64)
        # DuckDB's SUM of BIGINT is a HUGEINT (Arrow decimal128): the cast to int64 is checked.
        d[row, bucket] = pc.cast(b[m].fill_null(0), pa.int64()).to_numpy()
        dense[m] = d
    return windows_from_dense(ids.dictionary, dense, windows)


def windows_from_dense(party_ids: pa.Array, dense: dict[str, np.ndarray], windows: tuple[Window, ...]) -> pa.Table:
    """party_id + one int64 column per window, from each measure's party x bucket sums
    (`dense[measure][i, k]`: party_ids[i]'s sum over bucket k, integers, exact in its dtype).
    A window is a difference of two running sums over the buckets (one subtraction each)."""
    assert windows and len({w.name for w in windows}) == len(windows)
    running: dict[str, np.ndarray] = {}  # measure -> (bucket + 1) x party, row k: sum of buckets < k
    for m, d in dense.items():
        r = np.zeros((BUCKETS_N + 1, len(party_ids)), dtype=d.dtype if d.dtype.kind == "f" else np.int64)
        np.cumsum(d.T, axis=0, out=r[1:])
        running[m] = r
    cols: dict[str, pa.Array] = {"party_id": party_ids}
    for w in windows:
        first, last = _bucket_of(w.to_days_ago + 1), _bucket_of(w.from_days_ago)
        r = running[w.measure]
        cols[w.name] = pa.array((r[last + 1] - r[first]).astype(np.int64), type=pa.int64())
    return pa.table(cols)


def _bucket_of(days_ago: int) -> int:
    """The bucket holding the day `days_ago` days before D (1 = the day before D)."""
    return (days_ago - 1) // MONTH_DAYS


def day_measures(party_day: ir.Table, measures: tuple[str, ...]) -> ir.Table:
    """party_id, day + one column per measure: the rollup rows summed per party-day (the unit
    the incremental state adds and subtracts). `party_day` is already filtered to the days wanted."""
    ms = [MEASURES[m] for m in measures]
    r = party_day
    return r.group_by("party_id", "day").aggregate(**{m.name: m.day_value(r).fill_null(0) for m in ms})


# Customer aggregates, from the pair rollup (purchases; one row per payee x payer x day).
PAYEE_AGGREGATES = ("cust_n_90d", "cust_n_365d", "cust_repeat_n_365d", "cust_top_minor_365d", "cust_total_minor_365d")
PAYER_AGGREGATES = ("merchants_n_90d",)


def pair_state(pair_day: ir.Table, a: AsOf) -> ir.Table:
    """Per (payee, payer) over the last 365 days: days with a purchase, amount, last day."""
    p = pair_day.filter(pair_day.day < a.date, pair_day.day >= a.start_date(MAX_WINDOW_DAYS))
    return p.group_by("payee_id", "payer_id").aggregate(
        days_n=p.count().cast("int64"),  # pair_day has one row per payee x payer x day: rows are days
        amount_minor=p.amount_minor.sum().cast("int64"),
        last_day=p.day.max(),
    )


def payee_aggregates(pairs: ir.Table, a: AsOf) -> ir.Table:
    """party_id (the payee) + PAYEE_AGGREGATES, from a pair_state table."""
    out = pairs.group_by(party_id=pairs.payee_id).aggregate(
        cust_n_90d=(pairs.last_day >= a.start_date(90)).sum().cast("int64"),
        cust_n_365d=pairs.count().cast("int64"),
        cust_repeat_n_365d=(pairs.days_n >= 2).sum().cast("int64"),
        cust_top_minor_365d=pairs.amount_minor.max().cast("int64"),
        cust_total_minor_365d=pairs.amount_minor.sum().cast("int64"),
    )
    return out.select("party_id", *PAYEE_AGGREGATES)


def payer_aggregates(pairs: ir.Table, a: AsOf) -> ir.Table:
    """party_id (the payer) + PAYER_AGGREGATES, from a pair_state table."""
    recent = pairs.filter(pairs.last_day >= a.start_date(90))
    return recent.group_by(party_id=recent.payer_id).aggregate(merchants_n_90d=recent.count().cast("int64"))


@dataclass(frozen=True)
class PaymentAggregates:
    """What the payment families read: window sums and the pair state, as Ibis tables."""

    windows: ir.Table  # party_id + window columns (zero-filled)
    pairs: ir.Table | None  # pair_state columns; None when both payees and payers are given
    payees: ir.Table | None = None  # payee_aggregates(pairs), when kept up to date elsewhere
    payers: ir.Table | None = None  # payer_aggregates(pairs), likewise
    # DuckDB: (name, Arrow table) registered on the connection, read by the tables above
    # (a cursor of the connection must register them too).
    arrow_tables: tuple[tuple[str, pa.Table], ...] = ()

    def __post_init__(self) -> None:
        assert self.pairs is not None or (self.payees is not None and self.payers is not None), "no pair state"

    def payee_table(self, a: AsOf) -> ir.Table:
        if self.payees is not None:
            return self.payees
        assert self.pairs is not None
        return payee_aggregates(self.pairs, a)

    def payer_table(self, a: AsOf) -> ir.Table:
        if self.payers is not None:
            return self.payers
        assert self.pairs is not None
        return payer_aggregates(self.pairs, a)


def full_aggregates(inp: Inputs, a: AsOf, windows: tuple[Window, ...]) -> PaymentAggregates:
    """The aggregates recomputed from the rollups (the full path)."""
    return PaymentAggregates(windows=window_sums(inp.party_day, a, windows), pairs=pair_state(inp.pair_day, a))
