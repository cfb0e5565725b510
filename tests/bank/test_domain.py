"""Pure domain: golden schedules against hand-computed tables, day counts, accrual carry, allocation."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldbank.bank import domain
from fieldbank.bank.domain import AccrualState, DomainError, Product, build_schedule

ANNUITY = Product("a", "installment", "annuity", apr_bps=1_200, term_months=12, day_count="30/360")
EQUAL = Product("e", "installment", "equal_principal", apr_bps=1_200, term_months=6, day_count="30/360")
SEASONAL = Product("s", "installment", "seasonal", apr_bps=1_000, term_months=9, day_count="ACT/360",
                   harvest_months=(9,))


def rows(schedule):  # noqa: ANN001, ANN201
    return [(i.seq, i.due_on.isoformat(), i.principal_minor, i.interest_minor) for i in schedule]


def test_annuity_golden_schedule() -> None:
    # 1,200,000 at 12 %/year, 30/360 -> 1 % a month; level payment P r / (1 - (1+r)^-12) =
    # 106,618.55 -> 106,619 (half-up). Interest = outstanding x 1 %, half-up; the last
    # installment takes the remaining principal (105,558) so the principal sums exactly.
    expected = [
        (1, 94_619, 12_000), (2, 95_565, 11_054), (3, 96_521, 10_098), (4, 97_486, 9_133),
        (5, 98_461, 8_158), (6, 99_446, 7_173), (7, 100_440, 6_179), (8, 101_444, 5_175),
        (9, 102_459, 4_160), (10, 103_483, 3_136), (11, 104_518, 2_101), (12, 105_558, 1_056),
    ]
    schedule = build_schedule(ANNUITY, 1_200_000, dt.date(2026, 1, 31))
    assert [(i.seq, i.principal_minor, i.interest_minor) for i in schedule] == expected
    # Month-end start: due dates clamp to the month's last day.
    assert [i.due_on for i in schedule[:3]] == [dt.date(2026, 2, 28), dt.date(2026, 3, 31), dt.date(2026, 4, 30)]
    assert all(i.total_minor == 106_619 for i in schedule[:-1])
    assert schedule[-1].total_minor == 106_614


def test_equal_principal_golden_schedule() -> None:
    schedule = build_schedule(EQUAL, 600_000, dt.date(2026, 1, 1))
    assert rows(schedule) == [
        (1, "2026-02-01", 100_000, 6_000), (2, "2026-03-01", 100_000, 5_000), (3, "2026-04-01", 100_000, 4_000),
        (4, "2026-05-01", 100_000, 3_000), (5, "2026-06-01", 100_000, 2_000), (6, "2026-07-01", 100_000, 1_000),
    ]


def test_seasonal_golden_schedule() -> None:
    # Interest only on 900,000 at 10 % ACT/360 (250 per actual day); principal after the harvest.
    schedule = build_schedule(SEASONAL, 900_000, dt.date(2026, 1, 15))
    assert rows(schedule) == [
        (1, "2026-02-15", 0, 7_750), (2, "2026-03-15", 0, 7_000), (3, "2026-04-15", 0, 7_750),
        (4, "2026-05-15", 0, 7_500), (5, "2026-06-15", 0, 7_750), (6, "2026-07-15", 0, 7_500),
        (7, "2026-08-15", 0, 7_750), (8, "2026-09-15", 0, 7_750), (9, "2026-10-15", 900_000, 7_500),
    ]


def test_grace_periods_are_interest_only() -> None:
    product = Product("g", "installment", "equal_principal", apr_bps=1_200, term_months=4, day_count="30/360",
                      grace_periods=2)
    assert [(i.principal_minor, i.interest_minor) for i in build_schedule(product, 100_001, dt.date(2026, 1, 1))] == [
        (0, 1_000), (0, 1_000), (50_001, 1_000), (50_000, 500)]  # 100,001 / 2 = 50,000.5 -> 50,001 half-up


@given(principal=st.integers(1, 10**10), apr=st.integers(0, 9_000), term=st.integers(1, 36),
       kind=st.sampled_from(["annuity", "equal_principal"]), dc=st.sampled_from(domain.DAY_COUNTS))
def test_schedule_principal_sums_exactly(principal: int, apr: int, term: int, kind: str, dc: str) -> None:
    product = Product("x", "installment", kind, apr_bps=apr, term_months=term, day_count=dc)
    schedule = build_schedule(product, principal, dt.date(2026, 3, 31))
    assert sum(i.principal_minor for i in schedule) == principal
    assert all(i.principal_minor >= 0 and i.interest_minor >= 0 for i in schedule)


def test_day_weights_30_360_make_thirty_day_months() -> None:
    for year, month in ((2026, 1), (2026, 2), (2028, 2), (2026, 4)):
        days = [dt.date(year, month, d) for d in range(1, 32) if _valid(year, month, d)]
        assert sum(domain.day_weight("30/360", d) for d in days) == 30
    assert domain.day_weight("ACT/365", dt.date(2026, 1, 31)) == 1


def _valid(y: int, m: int, d: int) -> bool:
    try:
        dt.date(y, m, d)
        return True
    except ValueError:
        return False


def test_daily_accrual_with_carry_sums_to_whole_period_interest() -> None:
    # 400,000 at 18 % ACT/365: 197.26 a day; truncating each day alone would lose 95 minor
    # units a year; the carried remainder loses nothing: 365 days = exactly 72,000.
    state = AccrualState("ACT/365")
    day = dt.date(2026, 1, 1)
    for k in range(365):
        state.accrue(400_000, 1_800, day + dt.timedelta(days=k))
    assert state.accrued_minor[:4] == [197, 197, 197, 198]
    assert sum(state.accrued_minor) == 72_000


@given(balance=st.integers(0, 10**9), apr=st.integers(0, 50_000), days=st.integers(1, 400),
       dc=st.sampled_from(domain.DAY_COUNTS))
def test_accrual_never_loses_a_remainder(balance: int, apr: int, days: int, dc: str) -> None:
    state = AccrualState(dc)
    start = dt.date(2026, 1, 1)
    for k in range(days):
        state.accrue(balance, apr, start + dt.timedelta(days=k + 1))
    exact_numerator = balance * apr * domain.period_days(dc, start, start + dt.timedelta(days=days))
    denominator = domain.BPS_PER_UNIT * domain.year_days(dc)
    assert sum(state.accrued_minor) == exact_numerator // denominator
    assert sum(state.accrued_minor) * denominator + state.carry == exact_numerator


def test_allocation_order_and_excess() -> None:
    owed = {"fees": 10, "interest": 20, "principal": 100}
    assert domain.allocate(25, owed, ("fees", "interest", "principal")) == (
        {"fees": 10, "interest": 15, "principal": 0}, 0)
    assert domain.allocate(25, owed, ("principal", "interest", "fees")) == (
        {"principal": 25, "interest": 0, "fees": 0}, 0)
    assert domain.allocate(200, owed, ("fees", "interest", "principal")) == (
        {"fees": 10, "interest": 20, "principal": 100}, 70)


def test_buckets() -> None:
    assert [domain.bucket_for_dpd(d) for d in (0, 1, 30, 31, 60, 61, 90, 91, 400)] == [
        "current", "1-30", "1-30", "31-60", "31-60", "61-90", "61-90", "90+", "90+"]


def test_bad_product_names_field_value_and_rule() -> None:
    with pytest.raises(DomainError) as err:
        Product("bad", "installment", "annuity", apr_bps=1_000, term_months=12, day_count="ACT/366")
    assert err.value.field == "day_count" and err.value.value == "ACT/366" and "one of" in err.value.rule
