"""Bills punctuality: utility and telecom bills due in the window and how late they were paid,
as known at D (a bill paid at or after D is unpaid as of D). Bills due at or after D are
not visible: the contract has no issue time for bills."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import Feature, count, money, ratio
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
    b = inp.bills.filter(inp.bills.due_at < a.ts)
    b = b.mutate(days_late=days_late_as_of(b.due_at, b.paid_at, a), unpaid=unpaid_as_of(b.paid_at, a))
    in_365 = b.due_at >= a.start_ts(365)
    in_90 = b.due_at >= a.start_ts(90)
    late = ibis.ifelse(b.days_late >= 1, 1, 0).cast("float64")
    out = b.group_by("party_id").aggregate(
        bills_n_365d=b.count(where=in_365).cast("int64"),
        bills_biller_kinds_n_365d=b.biller_kind.nunique(where=in_365).cast("int64"),
        bills_amount_minor_365d=b.amount_minor.sum(where=in_365),
        bills_late_share_365d=late.mean(where=in_365),
        bills_days_late_mean_365d=b.days_late.cast("float64").mean(where=in_365),
        bills_days_late_max_365d=b.days_late.max(where=in_365),
        bills_unpaid_overdue_n=b.count(where=b.unpaid).cast("int64"),
        bills_late_share_90d=late.mean(where=in_90),
    )
    return out
