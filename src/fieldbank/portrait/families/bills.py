"""Bills punctuality: utility and telecom bills due in the window and how late they were paid,
as known at D (a bill paid at or after D is unpaid as of D). Bills due at or after D are
not visible: the contract has no issue time for bills."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import Feature, count, money, ratio
from fieldbank.portrait.engine import safe_div
from fieldbank.portrait.families._common import days_late_as_of, unpaid_as_of
from fieldbank.portrait.inputs import AsOf, Inputs

F = "bills"
FEATURES = [
    count("bills_n_365d", F, "bills due in the last 365 days", 365),
    count("bills_biller_kinds_n_365d", F, "distinct kinds of biller (electricity, water, telecom), last 365 days",
          365),
    money("bills_amount_minor_365d", F, "amount of the bills due in the last 365 days", 365),
    ratio("bills_late_share_365d", F, "share of the last 365 days' bills paid 1+ days late or still unpaid", 365),
    ratio("bills_days_late_mean_365d", F, "mean days late (as known at D) of bills due in the last 365 days",
          365, "days"),
    Feature("bills_days_late_max_365d", F, "worst days late of the bills due in the last 365 days", 365, "days",
            dtype="int64"),
    count("bills_unpaid_overdue_n", F, "bills past due and unpaid as of D", None),
    ratio("bills_late_share_90d", F, "share of the last 90 days' bills paid late or still unpaid", 90),
]


def compute(inp: Inputs, a: AsOf) -> ir.Table:
    return finish(partials(inp.bills, a), a)


# Per party, as of D: sums, counts and extremes that change only on a bill's *event days*
# (see `events`), so the incremental state (state.py) keeps them and recomputes only the
# parties with an event; `finish` adds what moves every day in closed form. An unpaid bill
# due in the window is late by D_days - c days, c = D_days - days_late (D-independent).
def partials(bills: ir.Table, a: AsOf) -> ir.Table:
    """bills -> one row per party with a bill due before D (the full path's row set)."""
    b = bills.filter(bills.due_at < a.ts)
    b = b.mutate(days_late=days_late_as_of(b.due_at, b.paid_at, a), unpaid=unpaid_as_of(b.paid_at, a))
    in_365 = b.due_at >= a.start_ts(365)
    in_90 = b.due_at >= a.start_ts(90)
    late = b.days_late >= 1
    open_365 = in_365 & b.unpaid
    paid_365 = in_365 & ~b.unpaid
    c = ibis.literal(_epoch_days(a)) - b.days_late  # for unpaid bills only
    return b.group_by("party_id").aggregate(
        n_365=b.count(where=in_365).cast("int64"),
        kinds_365=b.biller_kind.nunique(where=in_365).cast("int64"),
        amount_365=b.amount_minor.sum(where=in_365),
        late_365=b.count(where=in_365 & late).cast("int64"),
        paid_late_sum_365=b.days_late.sum(where=paid_365).cast("int64"),
        paid_late_max_365=b.days_late.max(where=paid_365).cast("int64"),
        open_n_365=b.count(where=open_365).cast("int64"),
        open_c_sum_365=c.sum(where=open_365).cast("int64"),
        open_c_min_365=c.min(where=open_365).cast("int64"),
        unpaid_overdue_n=b.count(where=b.unpaid).cast("int64"),
        n_90=b.count(where=in_90).cast("int64"),
        late_90=b.count(where=in_90 & late).cast("int64"),
    )


def _epoch_days(a: AsOf) -> int:
    return (a.day - dt.date(1970, 1, 1)).days


def finish(p: ir.Table, a: AsOf) -> ir.Table:
    """The features from `partials` (possibly computed at an earlier date with no event since)."""
    d = ibis.literal(_epoch_days(a))
    open_sum = p.open_n_365 * d - p.open_c_sum_365.fill_null(0)
    open_max = d - p.open_c_min_365
    return p.select(
        "party_id",
        bills_n_365d=p.n_365,
        bills_biller_kinds_n_365d=p.kinds_365,
        bills_amount_minor_365d=p.amount_365,
        bills_late_share_365d=safe_div(p.late_365, p.n_365),
        bills_days_late_mean_365d=safe_div(p.paid_late_sum_365.fill_null(0) + open_sum, p.n_365),
        bills_days_late_max_365d=ibis.ifelse(
            p.paid_late_max_365.isnull(), open_max,
            ibis.ifelse(open_max.isnull(), p.paid_late_max_365, ibis.greatest(p.paid_late_max_365, open_max)),
        ).cast("int64"),
        bills_unpaid_overdue_n=p.unpaid_overdue_n,
        bills_late_share_90d=safe_div(p.late_90, p.n_90),
    )


def events(bills: ir.Table) -> ir.Table:
    """(party_id, day): the dates D at which a bill's contribution to `partials` can change:
    visible (due before D), late (a whole day past due, unpaid), paid (known at D), out of
    the 90- and 365-day windows. A superset is harmless (the party is just recomputed)."""
    due = bills.due_at.date()
    days = [due + ibis.interval(days=k) for k in (1, 2, 91, 366)]
    paid = bills.paid_at.date() + ibis.interval(days=1)
    out = None
    for day in [*days, paid]:
        part = bills.select("party_id", day=day.cast("date"))
        out = part if out is None else out.union(part, distinct=False)
    assert out is not None
    return out.filter(out.day.notnull())
