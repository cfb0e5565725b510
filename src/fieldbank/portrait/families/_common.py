"""Small helpers shared by the feature families."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.engine import whole_days_between
from fieldbank.portrait.inputs import AsOf
from fieldbank.portrait.windows import MONTHS_N



def outer_join_on_party(left: ir.Table, right: ir.Table) -> ir.Table:
    """Full outer join on party_id, keeping one party_id column."""
    return left.outer_join(right, "party_id").mutate(
        party_id=ibis.coalesce(ibis._.party_id, ibis._.party_id_right)
    ).drop("party_id_right")


def month_columns(t: ir.Table, prefix: str) -> list[ir.FloatingValue]:
    return [t[f"{prefix}_m{k}"].fill_null(0).cast("float64") for k in range(MONTHS_N)]


def monthly_cv(t: ir.Table, prefix: str) -> ir.FloatingValue:
    """Coefficient of variation (population std / mean) of the 12 monthly sums, months with
    nothing counting as 0; null when the mean is 0. Two-pass in a fixed order, so both engines
    produce the same float."""
    months = month_columns(t, prefix)
    mean = sum(months[1:], months[0]) / MONTHS_N
    var = sum(((m - mean) ** 2 for m in months[1:]), (months[0] - mean) ** 2) / MONTHS_N
    return ibis.ifelse(mean > 0, var.sqrt() / mean, ibis.null("float64"))


def months_with_value(t: ir.Table, prefix: str) -> ir.IntegerValue:
    months = month_columns(t, prefix)
    flags = [ibis.ifelse(m > 0, 1, 0) for m in months]
    return sum(flags[1:], flags[0]).cast("int64")


def days_late_as_of(due_at: ir.TimestampValue, paid_at: ir.TimestampValue, a: AsOf) -> ir.IntegerValue:
    """Whole days late as known at D; null when not yet due at D.

    A payment made at or after D is not known at D: the obligation is then unpaid as of D and
    late by the days from due to D. Paid within 24 hours after the due time counts as 0 days.
    """
    paid_known = ibis.ifelse(paid_at < a.ts, paid_at, ibis.null("timestamp('UTC')"))
    late_paid = ibis.greatest(whole_days_between(paid_known, due_at), 0)
    late_open = whole_days_between(a.ts, due_at)
    return ibis.ifelse(
        due_at < a.ts,
        ibis.ifelse(paid_known.notnull(), late_paid, late_open),
        ibis.null("int64"),
    ).cast("int64")


def unpaid_as_of(paid_at: ir.TimestampValue, a: AsOf) -> ir.BooleanValue:
    """True when no payment is known at D (paid_at null or >= D)."""
    return paid_at.isnull() | (paid_at >= a.ts)
