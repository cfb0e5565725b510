"""Small helpers shared by the feature families."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.engine import whole_days_between
from fieldbank.portrait.inputs import AsOf

MONTHS_N = 12  # "monthly" statistics use 12 months of 30 days: the 360 days before D
MONTH_DAYS = 30


def in_window(day: ir.DateValue, a: AsOf, window_days: int) -> ir.BooleanValue:
    """day in [D - window_days, D); callers have already kept only days < D."""
    return day >= a.start_date(window_days)


def in_range(day: ir.DateValue, a: AsOf, from_days_ago: int, to_days_ago: int) -> ir.BooleanValue:
    """day in [D - from_days_ago, D - to_days_ago), e.g. (180, 90) = the 90 days before the last 90."""
    assert from_days_ago > to_days_ago >= 0
    cond = day >= a.start_date(from_days_ago)
    return cond if to_days_ago == 0 else cond & (day < a.start_date(to_days_ago))


def with_month_bucket(t: ir.Table, a: AsOf) -> ir.Table:
    """Adds `bucket`: the 30-day month before D a day falls in (0 = the last 30 days, 12 =
    days 361-365 back). Every window used (30, 90, 90-before-90, 360, 365 days) is a range
    of buckets, so families aggregate party x bucket first (few rows) and then pivot."""
    return t.mutate(bucket=((a.date.delta(t.day, unit="day") - 1) // MONTH_DAYS).cast("int64"))


def bucket_sum(b: ir.Table, value: ir.NumericValue, first: int, last: int) -> ir.NumericValue:
    """Sum of `value` over buckets first..last (inclusive) of a party x bucket table."""
    assert 0 <= first <= last <= MONTHS_N
    return value.sum(where=(b.bucket >= first) & (b.bucket <= last))


def window_buckets(window_days: int) -> int:
    """Last bucket of the window [D - window_days, D); windows must end on a bucket edge."""
    assert window_days in (30, 90, 180, 360, 365), window_days
    return MONTHS_N if window_days == 365 else window_days // MONTH_DAYS - 1


def month_sums(b: ir.Table, value: ir.NumericValue, prefix: str) -> dict[str, ir.Value]:
    """Aggregates `<prefix>_m0` (the last 30 days) ... `<prefix>_m11` (330-360 days ago)."""
    return {f"{prefix}_m{k}": value.sum(where=b.bucket == k) for k in range(MONTHS_N)}


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


def drop_month_columns(t: ir.Table, *prefixes: str) -> ir.Table:
    return t.drop(*[f"{p}_m{k}" for p in prefixes for k in range(MONTHS_N)])


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
