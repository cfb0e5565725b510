"""The supply chain family (families/supply_chain.py) and its PageRank, in numpy, from the
invoices' and loans' Parquet files.

What `supply_chain.compute` (with `pagerank_arrow` of `edge_weights(graph_edges)`) returns on
DuckDB, with the same rows and values (row order not defined): ints exact, floats the same
arithmetic, sums of integer-valued floats exact; the HHI and PageRank sums may add in another
order (last bits). The family's SQL (~14 group-bys, joins and a union over 2 x 125k invoice
sides at 5M payments) was the latest portrait's most expensive query; here each party id is
read once, mapped to a small integer, and each column is a `bincount` over the invoices or
over the (buyer, supplier) pairs, found once by a radix sort and shared by the counterparty
columns and the PageRank edges.

The Ibis definition stays the definition: the tests check every column against it.
`raw_supply_chain` returns None when an input falls outside what this path handles exactly
(a null id or time, an amount below 1, amounts whose float64 sums could pass 2**53, times not
in microseconds as the contract has them): the caller then runs the SQL.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fieldbank.portrait.families.supply_chain import DISTRESS_DAYS_LATE, FEATURES
from fieldbank.portrait.graph import pagerank_numpy
from fieldbank.portrait.raw_payments import EXACT_FLOAT_SUM, READ_THREADS, pair_order

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
US_PER_S = 1_000_000
S_PER_DAY = 86_400
WINDOW_DAYS = 365  # supply_chain's `a.start_ts(365)`
P90 = 0.9  # its `.quantile(0.9)`
INVOICE_COLUMNS = ("supplier_id", "buyer_id", "issued_at", "due_at", "amount_minor", "paid_at")
INVOICE_NOT_NULL = ("supplier_id", "buyer_id", "issued_at", "due_at", "amount_minor")
LOAN_COLUMNS = ("party_id", "opened_at", "defaulted_at")
# DuckDB's quantile_cont interpolates lo * (1 - d) + hi * d as one fused multiply-add (its
# build contracts it): lo * (1 - d) exact, added to the rounded hi * d, rounded once. With an
# x87 long double (64-bit mantissa) the product is exact for |lo| < 2**11 days, and the sum is
# rounded to 64 bits then to 53 (measured equal on 200k groups); otherwise plain float64
# arithmetic, at most an ulp off.
_EXTENDED = np.finfo(np.longdouble).nmant >= 63
_EXACT_PRODUCT_DAYS = 2**11


@dataclass(frozen=True)
class RawInvoices:
    """The invoices issued before D (numpy arrays, one entry per invoice) and the parties in
    distress through a loan (opened and defaulted before D)."""

    parties: pa.Array  # party ids (strings; also of the defaulted loans); buyer and supplier index it
    buyer: np.ndarray  # int64
    supplier: np.ndarray  # int64
    issued_us: np.ndarray  # int64, microseconds since the epoch (UTC)
    due_us: np.ndarray
    paid_us: np.ndarray  # int64; meaningless where paid_null
    paid_null: np.ndarray  # bool
    amount: np.ndarray  # int64
    loan_default: np.ndarray  # bool per party


def raw_supply_chain(invoice_files: list[Path], loan_files: list[Path], as_of: dt.date) -> pa.Table | None:
    """The supply chain family's rows at `as_of` (party_id + FEATURES) from the lake's
    invoice and loan Parquet files; None when this path cannot be exact for them."""
    inv = read_invoices(invoice_files, loan_files, as_of)
    return None if inv is None else supply_chain_table(inv, as_of)


def _micros(col: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """A timestamp column as int64 microseconds since the epoch (None unless its unit is us)."""
    if col.type.unit != "us":
        return None
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.view(pa.int64()).to_numpy(zero_copy_only=False)


def _read(files: list[Path], columns: tuple[str, ...]) -> pa.Table:
    """The files' columns, READ_THREADS files at a time (Arrow releases the GIL)."""
    def read(f: Path) -> pa.Table:
        return pq.ParquetFile(f).read(columns=list(columns), use_threads=False)

    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        tables = list(pool.map(read, files))
    return pa.concat_tables(tables) if tables else pa.table({})


def _as_of_us(as_of: dt.date) -> int:
    return (as_of - EPOCH.date()).days * S_PER_DAY * US_PER_S


def read_invoices(invoice_files: list[Path], loan_files: list[Path], as_of: dt.date) -> RawInvoices | None:
    """The invoices issued before D, ids as indices into one party list (see RawInvoices)."""
    d_us = _as_of_us(as_of)
    if not invoice_files:
        t = pa.table({c: pa.array([], pa.string()) for c in ("supplier_id", "buyer_id")})
        t = t.append_column("issued_at", pa.array([], pa.timestamp("us", tz="UTC")))
    else:
        t = _read(invoice_files, INVOICE_COLUMNS)
        if any(t[c].null_count for c in INVOICE_NOT_NULL):
            return None  # SQL groups a null id as a party and drops a null time from a filter: not here
        if t["buyer_id"].type != pa.string() or t["supplier_id"].type != pa.string():
            return None  # encoded together below: the contract's type only
    issued = _micros(t["issued_at"])
    if issued is None:
        return None
    keep = issued < d_us
    if not keep.all():
        t = t.filter(pa.array(keep))
        issued = issued[keep]
    if t.num_rows == 0:
        return RawInvoices(pa.array([], pa.string()), *(np.zeros(0, np.int64),) * 5, np.zeros(0, bool),
                           np.zeros(0, np.int64), np.zeros(0, bool))
    due, paid = _micros(t["due_at"]), _micros(t["paid_at"].fill_null(0))
    amount = t["amount_minor"].to_numpy()
    if due is None or paid is None or int(amount.min()) < 1:
        return None  # an amount below 1: a role total of 0 divides by zero in SQL
    # Every sum below is of at most all rows' amounts (each side once): exact in float64.
    if int(amount.max()) * 2 * len(amount) >= EXACT_FLOAT_SUM:
        return None
    defaulted_ids = pa.array([], pa.string())
    if loan_files:
        loans = _read(loan_files, LOAN_COLUMNS)
        opened, defaulted = _micros(loans["opened_at"].fill_null(0)), _micros(loans["defaulted_at"].fill_null(0))
        if opened is None or defaulted is None:
            return None
        # A null time or id: the SQL's comparison is unknown, its join key matches nothing.
        valid = (loans["opened_at"].is_valid().to_numpy() & loans["defaulted_at"].is_valid().to_numpy())
        hit = valid & (opened < d_us) & (defaulted < d_us)
        if loans["party_id"].type != pa.string():
            return None
        defaulted_ids = loans["party_id"].filter(pa.array(hit)).drop_null().combine_chunks()
    # The ids of both sides and of the defaulted loans encoded at once (one hash table; a
    # party seen only in a loan has a code, and no row: `present` below is the invoices').
    n = t.num_rows
    encoded = pc.dictionary_encode(pa.concat_arrays(t["buyer_id"].chunks + t["supplier_id"].chunks + [defaulted_ids]))
    codes = encoded.indices.to_numpy().astype(np.int64)
    parties = encoded.dictionary
    loan_default = np.zeros(len(parties), dtype=bool)
    loan_default[codes[2 * n:]] = True
    return RawInvoices(parties=parties, buyer=codes[:n], supplier=codes[n:2 * n], issued_us=issued, due_us=due,
                       paid_us=paid, paid_null=t["paid_at"].is_null().to_numpy(zero_copy_only=False),
                       amount=amount, loan_default=loan_default)


def whole_days(later_us: np.ndarray | int, earlier_us: np.ndarray) -> np.ndarray:
    """engine.whole_days_between as DuckDB computes it: floor((epoch(later) - epoch(earlier))
    / 86400) on float64 epoch seconds (us / 1e6)."""
    return np.floor((np.divide(later_us, US_PER_S) - earlier_us / US_PER_S) / S_PER_DAY).astype(np.int64)


def quantile_cont(values: np.ndarray, groups: np.ndarray, groups_n: int, q: float) -> np.ndarray:
    """DuckDB's quantile_cont(values, q) per group 0..groups_n-1 (NaN for an empty group):
    the values sorted within each group, then at rn = (n - 1) * q: the value at rn if whole,
    else lo * (1 - d) + hi * d between floor and ceil (see _EXTENDED). `values` are whole
    numbers >= 0 (days)."""
    assert values.size == 0 or values.min() >= 0
    span = int(values.max()) + 1 if values.size else 1
    # Sorted by group, then value: a radix sort (raw_payments.pair_order; 2x np.sort here).
    ordered = values[pair_order(groups, values, max(groups_n, span))]
    counts = np.bincount(groups, minlength=groups_n)
    present = counts > 0
    n = counts[present]
    starts = (np.cumsum(counts) - counts)[present]
    rn = (n - 1).astype(np.float64) * q
    floor_i, ceil_i = np.floor(rn).astype(np.int64), np.ceil(rn).astype(np.int64)
    lo = ordered[starts + floor_i].astype(np.float64)
    hi = ordered[starts + ceil_i].astype(np.float64)
    d = rn - floor_i
    mixed = lo * (1.0 - d) + hi * d
    if _EXTENDED:
        fused = (lo.astype(np.longdouble) * (1.0 - d).astype(np.longdouble) + (hi * d).astype(np.longdouble))
        mixed = np.where(lo < _EXACT_PRODUCT_DAYS, fused.astype(np.float64), mixed)
    out = np.full(groups_n, np.nan)
    out[present] = np.where(floor_i == ceil_i, lo, mixed)
    return out


def _mean(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """sums / counts, NaN (null) where counts is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def supply_chain_table(inv: RawInvoices, as_of: dt.date) -> pa.Table:
    """The family's rows (see the module doc); the comments name the Ibis definition's parts."""
    d_us = _as_of_us(as_of)
    w_us = d_us - WINDOW_DAYS * S_PER_DAY * US_PER_S
    parties_n = len(inv.parties)
    side = {"buyer": inv.buyer, "supplier": inv.supplier}  # the party of each role's side
    cols: dict[str, np.ndarray] = {}

    def per_party(ids: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(ids, weights=weights, minlength=parties_n)

    # days_late_as_of / unpaid_as_of, for the invoices due before D.
    due_before = inv.due_us < d_us
    paid_known = ~inv.paid_null & (inv.paid_us < d_us)
    days_late = np.where(paid_known, np.maximum(whole_days(inv.paid_us, inv.due_us), 0),
                         whole_days(d_us, inv.due_us))

    # Punctuality on the invoices due in the window (both roles see the same invoices).
    due_365 = due_before & (inv.due_us >= w_us)
    late = days_late[due_365]
    late_f, late_flag = late.astype(np.float64), (late >= 1).astype(np.float64)
    for role, ids in side.items():
        party = ids[due_365]
        due_n = per_party(party)
        cols[f"sc_{role}_days_late_mean_365d"] = _mean(per_party(party, late_f), due_n)
        cols[f"sc_{role}_days_late_p90_365d"] = quantile_cont(late, party, parties_n, P90)
        cols[f"sc_{role}_late_share_365d"] = _mean(per_party(party, late_flag), due_n)
    amount_f = inv.amount.astype(np.float64)  # exact: read_invoices bounds every sum below 2**53
    overdue = due_before & ~paid_known  # unpaid as of D: no payment, or paid at or after D
    party = inv.buyer[overdue]
    cols["sc_overdue_unpaid_minor"] = np.where(per_party(party) > 0, per_party(party, amount_f[overdue]), np.nan)
    in_365 = inv.issued_us >= w_us
    amount_365_f = amount_f[in_365]
    degree_n = per_party(inv.buyer[in_365]) + per_party(inv.supplier[in_365])
    degree = per_party(inv.buyer[in_365], amount_365_f) + per_party(inv.supplier[in_365], amount_365_f)
    cols["sc_weighted_degree_minor_365d"] = np.where(degree_n > 0, degree, np.nan)

    # Counterparties: the (buyer, supplier) pairs, as runs of the invoices sorted by pair.
    order = pair_order(inv.buyer, inv.supplier, parties_n)
    buyer, supplier = inv.buyer[order], inv.supplier[order]
    if order.size:
        starts = np.flatnonzero(np.r_[True, (buyer[1:] != buyer[:-1]) | (supplier[1:] != supplier[:-1])])
        first_us = np.minimum.reduceat(inv.issued_us[order], starts)
        amount_365 = np.add.reduceat(np.where(in_365, inv.amount, 0)[order], starts)
        active = np.logical_or.reduceat(in_365[order], starts)  # amount_365d not null
        pair_b, pair_s = buyer[starts][active], supplier[starts][active]
        first_us, amount_365 = first_us[active], amount_365[active]
    else:
        pair_b = pair_s = first_us = amount_365 = np.zeros(0, np.int64)
    tenure = whole_days(d_us, first_us).astype(np.float64)
    pair_amount = amount_365.astype(np.float64)
    pair_party = {"buyer": pair_b, "supplier": pair_s}
    cp_n = {}
    cps: dict[str, np.ndarray] = {}
    for role, cp_role in (("buyer", "supplier"), ("supplier", "buyer")):  # the party's role, its cps'
        p = pair_party[role]
        cp_n[role] = np.bincount(p, minlength=parties_n)
        total = np.bincount(p, weights=pair_amount, minlength=parties_n)
        share_sq = (pair_amount / total[p]) ** 2
        cps[f"sc_{cp_role}s_n_365d"] = cp_n[role]
        cps[f"sc_{cp_role}_tenure_days_mean_365d"] = _mean(np.bincount(p, weights=tenure, minlength=parties_n),
                                                           cp_n[role])
        cps[f"sc_{cp_role}_hhi_365d"] = np.where(cp_n[role] > 0, np.bincount(p, weights=share_sq, minlength=parties_n),
                                                 np.nan)
    has_cps = (cp_n["buyer"] + cp_n["supplier"]) > 0  # a row in the counterparty aggregates
    cols.update(cps)

    # Counterparties' distress: the distinct (party, cp) of both roles. A pair (b, s) gives b
    # the cp s and s the cp b, unless (s, b) is a pair too (it gives s the cp b itself).
    distressed = inv.loan_default.copy()
    distressed[inv.buyer[due_365 & (days_late > DISTRESS_DAYS_LATE)]] = True
    # (s, b) is a pair iff (b, s) is among the flipped pairs; the keys are sorted (pair_order
    # sorted by buyer, then supplier), so searching them in order is cache-friendly (4x).
    keys = pair_b * parties_n + pair_s
    flipped = np.sort(pair_s * parties_n + pair_b)
    at = np.minimum(np.searchsorted(flipped, keys), max(len(keys) - 1, 0))
    other = ~(flipped[at] == keys) if keys.size else np.zeros(0, bool)
    cp_distinct = np.bincount(pair_b, minlength=parties_n) + np.bincount(pair_s[other], minlength=parties_n)
    cp_distressed = (np.bincount(pair_b, weights=distressed[pair_s], minlength=parties_n)
                     + np.bincount(pair_s[other], weights=distressed[pair_b[other]], minlength=parties_n))
    cols["sc_counterparty_distress_share_365d"] = _mean(cp_distressed, cp_distinct)

    # Network position: PageRank of the window's graph, whose edges are the pairs above.
    in_graph = np.zeros(parties_n, dtype=bool)
    in_graph[pair_b] = True
    in_graph[pair_s] = True
    nodes_n = int(in_graph.sum())
    pagerank = np.full(parties_n, np.nan)
    if nodes_n:
        node = np.cumsum(in_graph) - 1  # party -> node index
        rank = pagerank_numpy(node[pair_b], node[pair_s], pair_amount, nodes_n)
        pagerank[in_graph] = rank * float(nodes_n)
    cols["sc_pagerank_365d"] = pagerank

    present = np.zeros(parties_n, dtype=bool)  # a row: the party has an invoice issued before D
    present[inv.buyer] = True
    present[inv.supplier] = True
    assert not (has_cps & ~present).any() and not (in_graph & ~present).any()
    return _table(inv.parties, present, cols, has_cps)


_COUNTERPARTY_COLUMNS = ("sc_suppliers_n_365d", "sc_buyers_n_365d", "sc_supplier_tenure_days_mean_365d",
                         "sc_buyer_tenure_days_mean_365d", "sc_supplier_hhi_365d", "sc_buyer_hhi_365d",
                         "sc_counterparty_distress_share_365d")
_ARROW = {"int64": pa.int64(), "float64": pa.float64()}


def _table(parties: pa.Array, present: np.ndarray, cols: dict[str, np.ndarray], has_cps: np.ndarray) -> pa.Table:
    """The rows of `present` parties; NaN is null (no value is NaN otherwise), and the
    counterparty columns are null for a party without a counterparty of the window (the SQL's
    left join), even the counts."""
    dtypes = {f.name: f.dtype for f in FEATURES}
    assert cols.keys() == dtypes.keys(), sorted(cols.keys() ^ dtypes.keys())
    rows = np.flatnonzero(present)
    out: dict[str, pa.Array] = {"party_id": parties.take(pa.array(rows))}
    for name in dtypes:  # the catalog's order
        v = cols[name][rows]
        null = np.isnan(v.astype(np.float64))
        if name in _COUNTERPARTY_COLUMNS:
            null |= ~has_cps[rows]
        if dtypes[name] == "int64":
            v = np.where(null, 0, v).astype(np.int64)
        out[name] = pa.array(v, type=_ARROW[dtypes[name]], mask=null if null.any() else None)
    return pa.table(out)
