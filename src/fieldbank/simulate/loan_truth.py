"""The true PD of the label event: this open loan reaches 90+ DPD within the horizon.

The risk models are trained on "the party's loan, open at D, reaches 90+ DPD (its
`defaulted_at`) in [D, D + horizon)" (fieldbank/labels.py). At every month start D of the
period, for every loan of the past lender open at D (opened before D, not closed, not in
default), this module estimates the probability of exactly that event from the simulator's
full state at D (cash, job, informal debt, whether the borrower walked away, the loan's
installments paid, bills deferred, traits) by Monte Carlo continuation: `loan_pd_paths`
futures of 13 months, each with fresh draws of everything random in the simulation
(droughts, floods, price crashes, factory orders, job moves, harvest and revenue noise,
bills, life shocks; walk-aways are integrated out, see `_Loan`), running the same cash rules in the same order as the
simulation (households.py, bills.py, hidden.py) and the loan book's exact calendar: DPD
counted from the oldest unpaid installment's due date at each month's due day,
`defaulted_at` = that due date + 90 days (credit.LoanBook).

What it holds fixed, and so where it is an estimate and not the realized probability: the
network around the borrower (its employer keeps paying wages, a business keeps its
customers and revenue trend), and per-category rounding of spending. Every approximation
is on the side of fewer paths to default than the simulation's, which only lowers the
ceiling it gives; the realism figures check it against the realized outcomes.

Written for the horizons in HORIZONS_DAYS (columns `true_pd_<h>d`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fieldbank import contract
from fieldbank.simulate import credit, hidden, households as hh
from fieldbank.simulate.businesses import owner_draw_propensity
from fieldbank.simulate.params import (
    ELECTRICITY_MULTIPLIER,
    FESTIVAL_MULTIPLIER,
    US_PER_DAY,
    SimParams,
)
from fieldbank.simulate.population import Population
from fieldbank.simulate.shocks import HARVEST_SHARE, draw_shocks

HORIZONS_DAYS = (90, 180, 365)
# Months simulated forward: a default inside 365 days needs an installment due within
# 275 days, whose 90-day mark is seen at a due-day check at most 4 months after it.
FORWARD_MONTHS = 13
MC_CHUNK_ELEMENTS = 2_000_000  # loans x paths per block (bounds memory: ~30 arrays of float32)
BILL_NOISE_SIGMA = 0.08  # bills.month_bills
SCHEMA = pa.schema([
    ("party_id", pa.string()), ("loan_id", pa.string()), ("month_start", contract.TIMESTAMP),
    ("installments_paid", pa.int16()), ("installments_due", pa.int16()),
    *[(f"true_pd_{h}d", pa.float32()) for h in HORIZONS_DAYS],
])


@dataclass
class LoanState:
    """What the Monte Carlo starts from: the economy's state at a month start (engine.Economy)."""

    cash: np.ndarray
    employed: np.ndarray
    stressed: np.ndarray  # businesses
    revenue_ewma: np.ndarray  # businesses
    informal_debt: np.ndarray
    walked_away: np.ndarray
    pending_bills_minor: np.ndarray  # deferred last month, per party
    shock_risk: np.ndarray
    walk_away_risk: np.ndarray


def open_loans(book: credit.LoanBook, t: int) -> np.ndarray:
    """Loans open at the start of month t: opened before it, not closed, not (yet) in default."""
    if len(book) == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero((book.open_month < t) & (book.closed_at_us < 0) & (book.defaulted_at_us < 0))


def default_probabilities(p: SimParams, pop: Population, book: credit.LoanBook, loans: np.ndarray, t: int,
                          month_start: np.ndarray, s: LoanState, rng: np.random.Generator) -> np.ndarray:
    """horizons x paths x loans: P(defaulted_at in [D, D + h)) on each path (see `_Loan`)."""
    k = p.loan_pd_paths
    moy0 = (p.start.month - 1 + t) % 12
    assert t + FORWARD_MONTHS < len(month_start), "not enough calendar for the Monte Carlo"
    shocks = [draw_shocks(p, pop.climate_risk, (moy0 + j) % 12, k, rng) for j in range(FORWARD_MONTHS)]
    out = np.zeros((len(HORIZONS_DAYS), k, len(loans)), np.float32)
    party = book.party[loans]
    step = max(1, MC_CHUNK_ELEMENTS // k)
    is_h = party < pop.n_households
    for kind_mask, paths in ((is_h, _household_paths), (~is_h, _business_paths)):
        cols = np.flatnonzero(kind_mask)
        for lo in range(0, len(cols), step):
            c = cols[lo:lo + step]
            out[:, :, c] = paths(p, pop, book, loans[c], t, moy0, month_start, s, shocks, rng)
    return out


def true_pd(probabilities: np.ndarray) -> dict[int, np.ndarray]:
    """The true PD per loan and horizon: the mean over the paths."""
    return {h: probabilities[i].mean(axis=0) for i, h in enumerate(HORIZONS_DAYS)}


class _Loan:
    """The loan book's rules on paths x loans arrays (credit.LoanBook.check / pay), and the
    probability of the label's event on each path.

    Walk-aways are not drawn but integrated out (a Rao-Blackwell estimate): they do not depend
    on cash, and once a borrower walks away its default date is known (the oldest unpaid
    installment's due date + 90 days). So each path follows the borrower who has not walked
    away, with weight P(no walk-away yet), and adds at each month P(walks away now) x whether
    that default date falls in the window. Measured: this removes most of the Monte Carlo
    noise among the many safe loans, whose PD is mostly the walk-away hazard."""

    def __init__(self, book: credit.LoanBook, loans: np.ndarray, k: int, month_start: np.ndarray, d_us: int,
                 walk_hazard: np.ndarray, walked: np.ndarray) -> None:
        self.n_inst = book.n_installments
        self.open_month = book.open_month[loans]
        self.offset_us = book.day_offset_us[loans]
        self.installment = book.installment_minor[loans].astype(np.float64)
        self.paid = np.broadcast_to(book.paid_count[loans], (k, len(loans))).astype(np.int64)
        self.defaulted_at = np.full((k, len(loans)), -1, np.int64)
        self.month_start = month_start
        self.window_end_us = np.asarray([d_us + h * US_PER_DAY for h in HORIZONS_DAYS], np.int64)[:, None, None]
        self.d_us = d_us
        self.walk_hazard = walk_hazard  # per loan and month
        self.not_walked = np.where(walked, 0.0, 1.0)  # P(no walk-away so far) on paths that had not at D
        self.walked_at_d = walked.copy()  # these follow their (certain) path with weight 1
        self.walk_pd = np.zeros((len(HORIZONS_DAYS), k, len(loans)))

    def in_window(self, when_us: np.ndarray) -> np.ndarray:
        return (when_us >= self.d_us) & (when_us < self.window_end_us)

    def walk_away_now(self) -> None:
        """After this month's check: the borrowers who walk away now default on the oldest unpaid
        installment's due date + 90 days."""
        live = self.live & ~self.walked_at_d
        due = self.month_start[np.minimum(self.open_month + self.paid + 1, len(self.month_start) - 1)]
        when = due + self.offset_us + credit.DEFAULT_DPD * US_PER_DAY
        p_now = np.where(live, self.not_walked * self.walk_hazard, 0.0)
        self.walk_pd += p_now * self.in_window(when)
        self.not_walked = np.where(live, self.not_walked * (1 - self.walk_hazard), self.not_walked)

    def probabilities(self) -> np.ndarray:
        weight = np.where(self.walked_at_d, 1.0, self.not_walked)
        return (self.walk_pd + weight * self.in_window(self.defaulted_at)).astype(np.float32)

    @property
    def live(self) -> np.ndarray:
        """Open and not in default: the paths where the loan still matters."""
        return (self.paid < self.n_inst) & (self.defaulted_at < 0)

    def check(self, u: int) -> np.ndarray:
        """Due-day check of month u: record defaults; return installments due and unpaid."""
        due_count = np.minimum(np.maximum(u - self.open_month, 0), self.n_inst)
        unpaid = np.where(self.live, np.maximum(due_count - self.paid, 0), 0)
        late = unpaid > 0
        oldest = self.month_start[np.minimum(self.open_month + self.paid + 1, len(self.month_start) - 1)]
        dpd_days = (self.month_start[u] - oldest) // US_PER_DAY  # the day offset cancels
        newly = late & (dpd_days >= credit.DEFAULT_DPD)
        self.defaulted_at = np.where(newly, oldest + self.offset_us + credit.DEFAULT_DPD * US_PER_DAY,
                                     self.defaulted_at)
        return np.where(newly, 0, unpaid)

    def pay(self, cash: np.ndarray, unpaid: np.ndarray, will_pay: np.ndarray) -> np.ndarray:
        """Whole installments, oldest first, out of cash (households.pay_installments); returns cash left."""
        n_pay = np.where(will_pay, np.minimum(unpaid, np.floor(cash / self.installment)), 0).astype(np.int64)
        self.paid += n_pay
        return cash - n_pay * self.installment


def _draw(k: int, income_minor: np.ndarray, prob: np.ndarray | float, median_months: float,
          rng: np.random.Generator) -> np.ndarray:
    """paths x parties amounts of an event that happens with `prob` (0 where it does not)."""
    happens = rng.random((k, len(income_minor))) < prob
    amount = np.zeros(happens.shape)
    if happens.any():
        amount[happens] = hidden.lognormal_minor(np.broadcast_to(income_minor, happens.shape)[happens],
                                                 median_months, rng)
    return amount


def _life_events(p, pop, party, k, s, debt, cash, rng):
    """hidden.py on paths: shocks' cost from cash, then informal debt (walk-aways: `_Loan`)."""
    cost = _draw(k, pop.expected_income_minor[party], p.life_shock_prob * s.shock_risk[party],
                 p.life_shock_months, rng)
    paid_now = np.minimum(cost, cash)
    cash, debt = cash - paid_now, debt + cost - paid_now
    return cash, debt


def _household_paths(p, pop, book, loans, t, moy0, month_start, s, shocks, rng):
    k, n = p.loan_pd_paths, len(loans)
    h = book.party[loans]
    walked = np.broadcast_to(s.walked_away[h], (k, n))
    loan = _Loan(book, loans, k, month_start, int(month_start[t]), p.walk_away_prob * s.walk_away_risk[h], walked)
    vol = pop.volatility[h]
    has_emp = pop.employer[h] >= 0
    emp_stressed = np.zeros(n, bool)
    emp_stressed[has_emp] = s.stressed[pop.employer[h][has_emp]]
    p_sep = p.job_separation_prob * (1 + 4 * vol) + 0.05 * emp_stressed
    e = np.broadcast_to(s.employed[h], (k, n)).copy()
    cash = np.broadcast_to(s.cash[h].astype(np.float64), (k, n)).copy()
    debt = np.broadcast_to(s.informal_debt[h].astype(np.float64), (k, n)).copy()
    pending = np.broadcast_to(s.pending_bills_minor[h].astype(np.float64), (k, n)).copy()
    will_pay_base = pop.fraud_ring[h] < 0
    disc = pop.discipline[h]
    kappa = hh.spend_propensity(disc)
    wage = np.where(has_emp, pop.wage_minor[h], 0).astype(np.float64)
    farm = pop.farm_annual_minor[h].astype(np.float64)
    crop, region = pop.crop[h], pop.region[h]
    bill_base = pop.bill_minor[h].astype(np.float64)
    disc_want = pop.disc_want_minor[h].sum(axis=1).astype(np.float64)
    need_by_month = pop.need_by_month_minor[h].astype(np.float64)
    ess_floor_by_month = np.floor(need_by_month * hh.ESSENTIAL_FLOOR)
    reserve_base = 2.0 * disc * pop.ess_need_minor[h].sum(axis=1)
    reserve_months = np.round(1 + 5 * disc)
    for j in range(FORWARD_MONTHS):
        u, m = t + j, (moy0 + j) % 12
        if j > 0:  # end of last month: one uniform draw decides leaving and finding a job
            draw = rng.random((k, n))
            e = np.where(e, draw >= p_sep, draw < p.job_finding_prob)
        cash, debt = _life_events(p, pop, h, k, s, debt, cash, rng)
        unpaid = loan.check(u)
        loan.walk_away_now()
        left = np.where(loan.live, loan.n_inst - loan.paid, 0)  # for the reserve, before paying
        inst_open = np.where(loan.live, loan.installment, 0.0)
        cash = cash + e * wage
        share = HARVEST_SHARE[crop, m]
        grows = share > 0
        if grows.any():
            mult = shocks[j].crop_multiplier[:, region[grows], crop[grows]]
            noise = np.exp(rng.standard_normal((k, int(grows.sum()))) * vol[grows])
            cash[:, grows] += np.maximum(np.floor(farm[grows] * share[grows] * mult * noise), 1)
        floor = np.minimum(ess_floor_by_month[:, m], cash)
        cash -= floor
        repay = np.minimum(debt, cash)
        cash, debt = cash - repay, debt - repay
        cash = loan.pay(cash, unpaid, will_pay_base & ~walked)
        cash -= np.minimum(need_by_month[:, m] - floor, cash)
        # bills (bills.settle): last month's deferred first if cash covers them, then this month's
        pay_pending = (pending > 0) & (cash >= pending) & ~walked  # walked away: no formal creditor is paid
        cash -= np.where(pay_pending, pending, 0)
        amounts = bill_base * np.exp(rng.normal(0.0, BILL_NOISE_SIGMA, (k, n, 3)))
        amounts[..., 0] *= ELECTRICITY_MULTIPLIER[m]
        bills = np.where(bill_base > 0, np.maximum(np.floor(amounts), 1), 0).sum(axis=2)
        can = (cash >= bills) & ~walked
        cash -= np.where(can, bills, 0)
        pending = np.where(can, 0.0, bills)
        reserve = reserve_base + inst_open * np.minimum(left, reserve_months)
        budget = np.floor(kappa * np.maximum(cash - reserve, 0))
        spent = np.minimum(np.floor(disc_want * FESTIVAL_MULTIPLIER[m]), budget)
        cash -= spent * (1 - p.refund_prob)  # refunds come back within the month
        assert np.all(cash >= -1e-6)
    loan.check(t + FORWARD_MONTHS)
    return loan.probabilities()


def _business_paths(p, pop, book, loans, t, moy0, month_start, s, shocks, rng):
    """A business's month on its revenue trend: payroll, sales, overheads and bills, informal
    debt, installments, cost of goods, owner's draw (businesses.py, engine.businesses)."""
    k, n = p.loan_pd_paths, len(loans)
    party = book.party[loans]
    b = party - pop.n_households
    walked = np.broadcast_to(s.walked_away[party], (k, n))
    loan = _Loan(book, loans, k, month_start, int(month_start[t]), p.walk_away_prob * s.walk_away_risk[party],
                 walked)
    vol = pop.volatility[party]
    region = pop.region[party]
    rev = s.revenue_ewma[b]
    factory = pop.is_factory[b]
    emp = pop.employer >= 0
    payroll = np.bincount(pop.employer[emp], weights=pop.wage_minor[emp], minlength=pop.n_businesses)[b]
    fixed = (pop.overhead_minor[b] + pop.b_bill_minor[b].sum(axis=1)).astype(np.float64)
    cogs = pop.cogs_ratio[b]
    kappa = owner_draw_propensity(pop.discipline[party])
    target = 2.0 * (payroll + pop.overhead_minor[b]) * (0.5 + pop.management_quality[party])
    cash = np.broadcast_to(s.cash[party].astype(np.float64), (k, n)).copy()
    debt = np.broadcast_to(s.informal_debt[party].astype(np.float64), (k, n)).copy()
    for j in range(FORWARD_MONTHS):
        u = t + j
        cash, debt = _life_events(p, pop, party, k, s, debt, cash, rng)
        unpaid = loan.check(u)
        loan.walk_away_now()
        cash -= np.minimum(payroll, cash)
        demand = np.where(factory, shocks[j].factory_demand[:, region], 1.0)
        sales = rev * demand * np.exp(rng.standard_normal((k, n)) * (0.6 * vol + 0.08))
        cash += sales
        cash -= np.minimum(fixed, cash)
        repay = np.minimum(debt, cash)
        cash, debt = cash - repay, debt - repay
        cash = loan.pay(cash, unpaid, ~walked)
        cash -= np.minimum(cogs * sales, cash)
        cash -= kappa * np.maximum(cash - target, 0)
    loan.check(t + FORWARD_MONTHS)
    return loan.probabilities()


def table(pop: Population, book: credit.LoanBook, loans: np.ndarray, t: int, d_us: int,
          probabilities: np.ndarray) -> pa.Table:
    pds = true_pd(probabilities)
    due = np.minimum(np.maximum(t - 1 - book.open_month[loans], 0), book.n_installments)  # due dates before D
    return pa.table([
        pa.array(pop.party_ids.take(pa.array(book.party[loans]))),
        pa.array(np.char.add("L", loans.astype(str)) if len(loans) else np.zeros(0, str), pa.string()),
        pa.array(np.full(len(loans), d_us, np.int64), contract.TIMESTAMP),
        pa.array(book.paid_count[loans].astype(np.int16)), pa.array(due.astype(np.int16)),
        *[pa.array(pds[h].astype(np.float32)) for h in HORIZONS_DAYS],
    ], schema=SCHEMA)
