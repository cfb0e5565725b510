"""The pure domain of the bank core: products, day counts, schedules, allocation.

No database, no framework: plain dataclasses and small pure functions on integers, so
every rule can be tested against a hand-computed table. Money is integer minor units,
rates are basis points (1 bps = 0.01 %), dates are `datetime.date`.

Rounding (documented in docs/bank.md):
- schedules: each installment's interest and principal are rounded half-up to the minor
  unit; the last installment absorbs the rounding so principal parts sum exactly to the
  principal;
- daily accrual: truncation with the sub-minor remainder carried to the next day, so the
  sum of daily accruals equals the interest computed on the whole period (never lost).
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction

BPS_PER_UNIT = 10_000
MAX_TERM_MONTHS = 120
MAX_AMOUNT_MINOR = 10**13  # 100 billion major units: far above any loan we book
MAX_APR_BPS = 100_000
MAX_LATE_FEE_GRACE_DAYS = 60  # close-day looks back this far for late installments
MAX_PERIOD_DAYS = 31  # monthly periods: close-day finds current periods in a 31-day window  # 1000 % a year: a sanity bound, not a pricing policy

DAY_COUNTS = ("ACT/365", "ACT/360", "30/360")
PRODUCT_KINDS = ("revolving", "installment")
SCHEDULE_TYPES = ("revolving", "annuity", "equal_principal", "seasonal")
COMPONENTS = ("fees", "interest", "principal")
DEFAULT_ALLOCATION = ("fees", "interest", "principal")

# Delinquency buckets (lower DPD bound inclusive) and the loss allowance held on each, in bps
# of the outstanding balance. 90+ is non-performing (NPL).
BUCKETS: tuple[tuple[str, int, int], ...] = (
    ("current", 0, 100),
    ("1-30", 1, 500),
    ("31-60", 31, 2_000),
    ("61-90", 61, 5_000),
    ("90+", 91, 10_000),
)
NPL_BUCKETS = frozenset({"90+"})
DEFAULT_DPD = 90  # defaulted_at = first day at 90+ DPD (the data contract's definition)
WRITE_OFF_DPD = 180


class DomainError(ValueError):
    """A request that breaks a business rule; names the field, the value and the rule."""

    def __init__(self, field_name: str, value: object, rule: str) -> None:
        super().__init__(f"{field_name}={value!r}: {rule}")
        self.field = field_name
        self.value = value
        self.rule = rule


def bucket_for_dpd(dpd: int) -> str:
    assert dpd >= 0, dpd
    name = BUCKETS[0][0]
    for bucket_name, lower_dpd, _ in BUCKETS:
        if dpd >= lower_dpd:
            name = bucket_name
    return name


def half_up_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up (away from zero for .5), integers only."""
    assert denominator > 0
    if numerator >= 0:
        return (2 * numerator + denominator) // (2 * denominator)
    return -half_up_div(-numerator, denominator)


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day-of-month `months` later, clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    month_index = day.month - 1 + months
    year = day.year + month_index // 12
    month = month_index % 12 + 1
    return dt.date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def year_days(day_count: str) -> int:
    assert day_count in DAY_COUNTS, day_count
    return 365 if day_count == "ACT/365" else 360


def day_weight(day_count: str, day: dt.date) -> int:
    """How many interest days calendar day `day` counts for.

    ACT/*: every day counts 1. 30/360: every month counts 30, so the 31st counts 0 and the
    last day of February counts 1 + (30 - its day number), i.e. 3 (or 2 in a leap year).
    """
    assert day_count in DAY_COUNTS, day_count
    if day_count != "30/360":
        return 1
    if day.day == 31:
        return 0
    last_day = calendar.monthrange(day.year, day.month)[1]
    if day.month == 2 and day.day == last_day:
        return 1 + 30 - last_day
    return 1


def period_days(day_count: str, start: dt.date, end: dt.date) -> int:
    """Interest days in (start, end] under the convention (sum of day weights)."""
    assert end >= start
    if day_count != "30/360":
        return (end - start).days
    # 30/360 US-style on whole periods: the sum of daily weights, closed form.
    d1 = min(start.day, 30) if not _is_feb_end(start) else 30
    d2 = min(end.day, 30) if not _is_feb_end(end) else 30
    return 360 * (end.year - start.year) + 30 * (end.month - start.month) + (d2 - d1)


def _is_feb_end(day: dt.date) -> bool:
    return day.month == 2 and day.day == calendar.monthrange(day.year, 2)[1]


def period_interest_minor(principal_minor: int, apr_bps: int, days: int, day_count: str) -> int:
    """Interest on a constant balance over `days` interest days, rounded half-up."""
    return half_up_div(principal_minor * apr_bps * days, BPS_PER_UNIT * year_days(day_count))


@dataclass(frozen=True)
class Product:
    """A lending product's parameters. Rates in bps, money in minor units."""

    code: str
    kind: str  # revolving | installment
    schedule_type: str  # revolving | annuity | equal_principal | seasonal
    apr_bps: int
    term_months: int
    day_count: str = "ACT/365"
    penalty_bps: int = 0  # extra yearly rate on overdue principal
    late_fee_minor: int = 0  # flat fee per installment not paid after the grace days
    late_fee_grace_days: int = 0
    grace_periods: int = 0  # first periods interest-only (installment loans)
    harvest_months: tuple[int, ...] = ()  # seasonal: periods (1-based) when principal falls due
    cycle_days: int = 30  # revolving: statement every cycle_days
    payment_due_days: int = 10  # revolving: days from statement to due date
    min_payment_bps: int = 1_000  # revolving: share of principal billed each statement
    allocation_order: tuple[str, ...] = DEFAULT_ALLOCATION

    def __post_init__(self) -> None:
        if self.kind not in PRODUCT_KINDS:
            raise DomainError("kind", self.kind, f"one of {', '.join(PRODUCT_KINDS)}")
        if self.schedule_type not in SCHEDULE_TYPES:
            raise DomainError("schedule_type", self.schedule_type, f"one of {', '.join(SCHEDULE_TYPES)}")
        if (self.kind == "revolving") != (self.schedule_type == "revolving"):
            raise DomainError("schedule_type", self.schedule_type, "revolving if and only if kind is revolving")
        if self.day_count not in DAY_COUNTS:
            raise DomainError("day_count", self.day_count, f"one of {', '.join(DAY_COUNTS)}")
        if not 0 <= self.apr_bps <= MAX_APR_BPS:
            raise DomainError("apr_bps", self.apr_bps, f"between 0 and {MAX_APR_BPS}")
        if not 0 <= self.penalty_bps <= MAX_APR_BPS:
            raise DomainError("penalty_bps", self.penalty_bps, f"between 0 and {MAX_APR_BPS}")
        if not 1 <= self.term_months <= MAX_TERM_MONTHS:
            raise DomainError("term_months", self.term_months, f"between 1 and {MAX_TERM_MONTHS}")
        if not 0 <= self.grace_periods < self.term_months:
            raise DomainError("grace_periods", self.grace_periods, "between 0 and term_months - 1")
        if self.late_fee_minor < 0:
            raise DomainError("late_fee_minor", self.late_fee_minor, ">= 0")
        if not 0 <= self.late_fee_grace_days <= MAX_LATE_FEE_GRACE_DAYS:
            raise DomainError("late_fee_grace_days", self.late_fee_grace_days, f"between 0 and {MAX_LATE_FEE_GRACE_DAYS}")
        if sorted(self.allocation_order) != sorted(COMPONENTS):
            raise DomainError("allocation_order", self.allocation_order, "a permutation of fees, interest, principal")
        if self.schedule_type == "seasonal":
            if not self.harvest_months or any(not 1 <= m <= self.term_months for m in self.harvest_months):
                raise DomainError("harvest_months", self.harvest_months, "non-empty, each in 1..term_months")
            if self.term_months not in self.harvest_months:
                raise DomainError("harvest_months", self.harvest_months, "must include the last period")
        if not 1 <= self.cycle_days <= 92 or not 0 <= self.payment_due_days <= 60:
            raise DomainError("cycle_days", self.cycle_days, "1..92 (payment_due_days 0..60)")
        if not 0 <= self.min_payment_bps <= BPS_PER_UNIT:
            raise DomainError("min_payment_bps", self.min_payment_bps, f"between 0 and {BPS_PER_UNIT}")


@dataclass(frozen=True)
class Installment:
    seq: int  # 1-based
    start_on: dt.date  # interest period is (start_on, due_on]
    due_on: dt.date
    principal_minor: int
    interest_minor: int

    @property
    def total_minor(self) -> int:
        return self.principal_minor + self.interest_minor


def build_schedule(product: Product, principal_minor: int, first_day: dt.date) -> list[Installment]:
    """The repayment schedule of an installment loan disbursed on `first_day`.

    Monthly periods. Interest of each period = outstanding x apr x period days / year days
    (day-count convention), half-up. Principal parts: annuity (level payment computed with the
    periodic rate apr/12, half-up; grace periods interest-only), equal principal, or seasonal
    (interest-only, principal split evenly over the harvest months). The last installment
    absorbs all rounding: principal parts always sum to `principal_minor` exactly.
    """
    if product.kind != "installment":
        raise DomainError("product", product.code, "schedules exist only for installment products")
    if not 1 <= principal_minor <= MAX_AMOUNT_MINOR:
        raise DomainError("principal_minor", principal_minor, f"between 1 and {MAX_AMOUNT_MINOR}")
    n = product.term_months
    grace = product.grace_periods
    due_dates = [add_months(first_day, k) for k in range(1, n + 1)]
    starts = [first_day, *due_dates[:-1]]

    # Principal part per period, before the last-installment adjustment.
    principal_parts: list[int | None] = [0] * n
    if product.schedule_type == "equal_principal":
        amortising = list(range(product.grace_periods, n))
        each = half_up_div(principal_minor, len(amortising))
        for k in amortising:
            principal_parts[k] = each
    elif product.schedule_type == "seasonal":
        harvest = sorted(set(product.harvest_months))
        each = half_up_div(principal_minor, len(harvest))
        for m in harvest:
            principal_parts[m - 1] = each
    else:  # annuity: level payment after the grace periods; principal = payment - interest
        amortising_n = n - product.grace_periods
        rate = Fraction(product.apr_bps, BPS_PER_UNIT * 12)
        if rate == 0:
            level_payment = half_up_div(principal_minor, amortising_n)
        else:
            exact = principal_minor * rate / (1 - (1 + rate) ** -amortising_n)
            level_payment = half_up_div(exact.numerator, exact.denominator)
        for k in range(grace, n):
            principal_parts[k] = None  # computed from the level payment below
    schedule: list[Installment] = []
    outstanding = principal_minor
    for k in range(n):
        days = period_days(product.day_count, starts[k], due_dates[k])
        interest = period_interest_minor(outstanding, product.apr_bps, days, product.day_count)
        part = principal_parts[k]
        if part is None:  # annuity
            part = level_payment - interest
            assert k >= grace
        part = max(0, min(part, outstanding))
        if k == n - 1:
            part = outstanding  # the last installment absorbs rounding
        outstanding -= part
        schedule.append(Installment(k + 1, starts[k], due_dates[k], part, interest))
    assert outstanding == 0
    assert sum(i.principal_minor for i in schedule) == principal_minor
    return schedule


def allocate(amount_minor: int, owed_minor: dict[str, int], order: tuple[str, ...]) -> tuple[dict[str, int], int]:
    """Split a payment over the owed components in `order`; returns (paid per component, excess)."""
    assert amount_minor >= 0 and all(v >= 0 for v in owed_minor.values())
    assert sorted(order) == sorted(COMPONENTS), order
    paid: dict[str, int] = {}
    left = amount_minor
    for component in order:
        take = min(left, owed_minor.get(component, 0))
        paid[component] = take
        left -= take
    assert sum(paid.values()) + left == amount_minor
    return paid, left


@dataclass
class AccrualState:
    """Daily accrual with carried remainder: the exact-rounding rule, in one place.

    `carry` is in units of minor x bps x day (the numerator of interest before dividing by
    10_000 x year days). Python mirror of the close-day SQL, used by tests and the domain.
    """

    day_count: str
    carry: int = 0
    accrued_minor: list[int] = field(default_factory=list)

    def accrue(self, balance_minor: int, apr_bps: int, day: dt.date) -> int:
        denominator = BPS_PER_UNIT * year_days(self.day_count)
        total = self.carry + balance_minor * apr_bps * day_weight(self.day_count, day)
        amount = total // denominator
        self.carry = total - amount * denominator
        self.accrued_minor.append(amount)
        return amount
