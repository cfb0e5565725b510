"""Credit history: the credit file as it was known at D.

Only loans opened before D. The loans table carries outcomes updated later (max_dpd,
defaulted_at, closed_at), so status at D uses only timestamps < D: a loan is open at D
unless closed_at < D; defaulted iff defaulted_at < D. A loan's final `max_dpd` may have
been reached after D, so it is used only for loans closed before D (their DPD can no
longer change); for loans still open at D the only honest DPD fact is "reached 90+ before
D" (defaulted_at < D). `credit_max_dpd_known_days` combines the two.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import count, money
from fieldbank.portrait.engine import whole_days_between
from fieldbank.portrait.inputs import AsOf, Inputs

F = "credit"
DEFAULT_DPD_DAYS = 90
FEATURES = [
    count("credit_loans_n", F, "loans opened before D (all lenders, all history)", None),
    count("credit_loans_n_365d", F, "loans opened in the last 365 days", 365),
    money("credit_principal_minor_365d", F, "principal of the loans opened in the last 365 days", 365),
    count("credit_open_loans_n", F, "loans open at D (opened before D, not closed before D)", None),
    money("credit_open_principal_minor", F, "principal of the loans open at D", None),
    count("credit_lenders_n", F, "distinct lenders that lent to the party before D", None),
    count("credit_defaults_n", F, "loans that reached 90+ days past due before D", None),
    count("credit_written_off_n", F, "loans written off and closed before D", None),
    count("credit_max_dpd_known_days", F,
          "worst days past due known at D: max_dpd of loans closed before D, and 90 for a default before D", None,
          "days"),
    count("credit_days_since_last_default", F, "days from the last default (90+ DPD) before D to D; null if none",
          None, "days"),
    count("credit_file_age_days", F, "days from the first loan to D; null without loans", None, "days"),
]
# A missing credit file is a fact (0 loans), but "days since" has no value without an event.
FEATURES = [
    f if f.name not in ("credit_days_since_last_default", "credit_file_age_days", "credit_max_dpd_known_days")
    else type(f)(f.name, f.family, f.description, f.window_days, f.unit, dtype="int64", fill_zero=False)
    for f in FEATURES
]


def compute(inp: Inputs, a: AsOf) -> ir.Table:
    ln = inp.loans.filter(inp.loans.opened_at < a.ts)
    is_open = ln.closed_at.isnull() | (ln.closed_at >= a.ts)
    closed_before = ln.closed_at < a.ts
    defaulted_before = ln.defaulted_at < a.ts
    known_dpd = ibis.greatest(
        ibis.ifelse(closed_before, ln.max_dpd.cast("int64"), 0),
        ibis.ifelse(defaulted_before, DEFAULT_DPD_DAYS, 0),
    )
    out = ln.group_by("party_id").aggregate(
        credit_loans_n=ln.count().cast("int64"),
        credit_loans_n_365d=ln.count(where=ln.opened_at >= a.start_ts(365)).cast("int64"),
        credit_principal_minor_365d=ln.principal_minor.sum(where=ln.opened_at >= a.start_ts(365)),
        credit_open_loans_n=ln.count(where=is_open).cast("int64"),
        credit_open_principal_minor=ln.principal_minor.sum(where=is_open),
        credit_lenders_n=ln.lender.nunique().cast("int64"),
        credit_defaults_n=ln.count(where=defaulted_before.fill_null(False)).cast("int64"),
        credit_written_off_n=ln.count(where=ln.written_off & closed_before.fill_null(False)).cast("int64"),
        credit_max_dpd_known_days=known_dpd.max(),
        last_default_at=ln.defaulted_at.max(where=defaulted_before),
        first_opened_at=ln.opened_at.min(),
    )
    out = out.mutate(
        credit_days_since_last_default=whole_days_between(a.ts, out.last_default_at),
        credit_file_age_days=whole_days_between(a.ts, out.first_opened_at),
    )
    return out.drop("last_default_at", "first_opened_at")
