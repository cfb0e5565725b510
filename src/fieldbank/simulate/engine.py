"""The month loop: state arrays per party, advanced one month at a time, events streamed out.

`Economy` holds the state and has one method per step. Each month, in order: shocks; the
true PD at the month start (truth); loan applications and due installments; payroll;
harvest sales; households' spending (payments); businesses' sales, costs, bills, loans and
invoices; bills' rows; then job losses, shop switching and businesses' stress. The loop runs HORIZON_MONTHS past the
period without writing events, so every month start of the period has 12 months of
future for the counterfactual label (truth.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fieldbank import contract
from fieldbank.simulate import bills as bill_model
from fieldbank.simulate import businesses as biz
from fieldbank.simulate import credit, hidden, households as hh, loan_truth, truth
from fieldbank.simulate.params import (
    CATEGORY_INDEX,
    HORIZON_MONTHS,
    SHOP_SECTORS,
    US_PER_DAY,
    US_PER_SECOND,
    SimParams,
    month_starts_us,
)
from fieldbank.simulate.payments import (
    CHANNEL,
    KIND,
    SHOP_SLOT_OF_CATEGORY,
    PaymentRows,
    household_purchases,
    payday_ts,
    random_ts,
    simple_rows,
)
from fieldbank.simulate.population import (
    BUSINESS_SECTOR_LIST,
    Population,
    build_population,
    hex_hashes,
    pick_in_region_or_sector,
)
from fieldbank.simulate.shocks import HARVEST_SHARE, draw_shocks
from fieldbank.simulate.supply import InvoiceBook
from fieldbank.simulate.writer import (
    BackgroundWriter,
    TableSink,
    enum_strings,
    ids,
    prepare_staging,
    publish,
    take_ids,
    timestamps,
)

NO_CATEGORY = -1
SHOP_SECTOR_SLOT = np.asarray([BUSINESS_SECTOR_LIST.index(s) for s in SHOP_SECTORS])


@dataclass
class SimReport:
    """What a run produced: row counts, realism figures, timings."""

    params: SimParams
    raw_dir: Path
    truth_dir: Path
    rows: dict[str, int]
    realism: dict[str, float]
    seconds: float
    seconds_by_phase: dict[str, float] = field(default_factory=dict)


class EventOut:
    """Converts numpy event arrays to contract tables and hands them to the writer thread."""

    def __init__(self, raw_tmp: Path, party_ids: pa.Array, rows_per_file: int) -> None:
        self.party_ids = party_ids
        self.writer = BackgroundWriter()
        self.sinks = {name: TableSink(raw_tmp, name, rows_per_file) for name in contract.TABLE_ORDER}
        self.next_txn = 0
        self.next_bill = 0

    def payments(self, rows: PaymentRows) -> None:
        n = len(rows)
        if n == 0:
            return
        self.writer.submit(self.sinks["payments"], {
            "txn_id": ids("T", self.next_txn, n),
            "ts": timestamps(rows.ts_us),
            "payer_id": take_ids(self.party_ids, rows.payer),
            "payee_id": take_ids(self.party_ids, rows.payee),
            "amount_minor": pa.array(rows.amount_minor, pa.int64()),
            "channel": enum_strings(contract.PAYMENT_CHANNELS, rows.channel),
            "kind": enum_strings(contract.PAYMENT_KINDS, rows.kind),
            "category": enum_strings(contract.CATEGORIES, rows.category),
        })
        self.next_txn += n

    def bills(self, rows: bill_model.BillRows) -> None:
        n = len(rows.party)
        if n == 0:
            return
        self.writer.submit(self.sinks["bills"], {
            "bill_id": ids("B", self.next_bill, n),
            "party_id": take_ids(self.party_ids, rows.party),
            "biller_kind": enum_strings(contract.BILLER_KINDS, rows.kind),
            "due_at": timestamps(rows.due_us),
            "amount_minor": pa.array(rows.amount_minor, pa.int64()),
            "paid_at": timestamps(rows.paid_us, rows.paid_us >= 0),
        })
        self.next_bill += n

    def invoices(self, inv: dict, n_households: int) -> None:
        if len(inv["invoice_no"]) == 0:
            return
        self.writer.submit(self.sinks["invoices"], {
            "invoice_id": _prefixed("I", inv["invoice_no"]),
            "supplier_id": take_ids(self.party_ids, inv["supplier"] + n_households),
            "buyer_id": take_ids(self.party_ids, inv["buyer"] + n_households),
            "issued_at": timestamps(inv["issued_us"]),
            "due_at": timestamps(inv["due_us"]),
            "amount_minor": pa.array(inv["amount_minor"], pa.int64()),
            "paid_at": timestamps(inv["paid_us"], inv["paid_us"] >= 0),
        })

    def table(self, name: str, columns: dict[str, pa.Array]) -> None:
        self.writer.submit(self.sinks[name], columns)

    def close(self) -> dict[str, int]:
        self.writer.close()
        for sink in self.sinks.values():
            sink.close()
        return {name: sink.rows for name, sink in self.sinks.items()}


def _prefixed(prefix: str, numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers, pa.int64()), pa.string()), "")


def parties_table(pop: Population, start_us: int, rng: np.random.Generator) -> dict[str, pa.Array]:
    n = pop.n_parties
    kind = np.r_[np.zeros(pop.n_households, np.int8), np.ones(pop.n_businesses, np.int8)]
    # the party "appears" some time before the period; created_at is before the first event
    created = start_us - rng.integers(30, 3650, n) * US_PER_DAY - rng.integers(0, 86_400, n) * US_PER_SECOND
    birth_ok = pop.birth_year_shown
    phone = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    device = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64)
    # fraud rings share one device
    ring = pop.fraud_ring
    in_ring = ring >= 0
    if in_ring.any():
        ring_device = rng.integers(0, 2**63, int(ring.max()) + 1, dtype=np.int64).astype(np.uint64)
        device[in_ring] = ring_device[ring[in_ring]]
    phone_ok = rng.random(n) >= 0.02
    device_ok = (rng.random(n) >= 0.05) | in_ring
    income_ok = pop.declared_income_shown
    return {
        "party_id": pop.party_ids,
        "kind": enum_strings(contract.PARTY_KINDS, kind),
        "region_id": _prefixed("R", pop.region.astype(np.int64)),
        "sector": enum_strings(contract.SECTORS, pop.sector),
        "created_at": timestamps(created),
        "birth_year": pa.array(pop.birth_year, pa.int32(), mask=~birth_ok),
        "declared_income_minor": pa.array(pop.declared_income_minor, pa.int64(), mask=~income_ok),
        "declared_assets_minor": pa.array(np.maximum(pop.declared_assets_minor, 0), pa.int64(),
                                          mask=pop.declared_assets_minor < 0),
        "phone_hash": pa.array(hex_hashes(phone), pa.string(), mask=~phone_ok),
        "device_hash": pa.array(hex_hashes(device), pa.string(), mask=~device_ok),
    }


@dataclass
class MonthFlows:
    """One month's money per party: what the truth records and the cash identity checks."""

    n: int
    n_b: int

    def __post_init__(self) -> None:
        n = self.n
        self.pay_in = np.zeros(n)  # float64 sums of int64 amounts: exact below 2**53
        self.pay_out = np.zeros(n)
        self.ext_in, self.ext_out = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.loan_in, self.loan_out = np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.inc, self.com, self.dsc = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
        self.cut = np.zeros(n, np.int64)  # committed outflows paid after installments (truth.counterfactual)
        self.received_b = np.zeros(self.n_b, np.int64)  # payments received by businesses
        self.rows: list[PaymentRows] = []  # payments other than household purchases

    def tally(self, rows: PaymentRows) -> None:
        self.pay_out += np.bincount(rows.payer, weights=rows.amount_minor, minlength=self.n)
        self.pay_in += np.bincount(rows.payee, weights=rows.amount_minor, minlength=self.n)


@dataclass
class Month:
    """Where we are in the calendar."""

    t: int
    start_us: int
    length_us: int
    of_year: int
    emit: bool  # inside the period (events written) or in the horizon after it


class Economy:
    """The economy's state (per-party arrays) and one method per step of the month."""

    def __init__(self, p: SimParams, pop: Population, month_start: np.ndarray, rs: np.random.Generator,
                 re: np.random.Generator) -> None:
        n, n_h = pop.n_parties, pop.n_households
        self.p, self.pop, self.month_start, self.rs, self.re = p, pop, month_start, rs, re
        self.n, self.n_h, self.n_b = n, n_h, pop.n_businesses
        self.cash = pop.cash0_minor.copy()
        self.employed = rs.random(n_h) < 0.95
        self.shops = pop.shops.copy()
        self.revenue_ewma = pop.expected_revenue_minor.astype(np.float64)
        self.stressed = np.zeros(self.n_b, bool)
        self.bill_base = np.concatenate([pop.bill_minor, pop.b_bill_minor])
        self.bill_due_day = rs.integers(4, 20, n)
        self.pending = bill_model.PendingBills(
            bill_model.BillRows(*(np.zeros(0, np.int64) for _ in range(5))), np.zeros(n, np.int64))
        self.book = credit.LoanBook(p.loan_installments)
        self.loan_of_party = np.full(n, -1, np.int64)
        self.score = credit.traditional_score(pop.declared_income_minor, pop.declared_assets_minor,
                                              pop.birth_year, p.start.year)
        self.threshold = float(np.quantile(self.score, 1 - p.approval_share))
        self.fraud = pop.fraud_ring >= 0
        self.invoices = InvoiceBook()
        self.disc = pop.discipline
        self.b_disc, self.b_vol = pop.discipline[n_h:], pop.volatility[n_h:]
        self.b_mq = pop.management_quality[n_h:]
        self.ess_base_total = pop.ess_need_minor.sum(axis=1)
        self.base_spend = pop.ess_need_minor + pop.disc_want_minor
        # hidden risks (hidden.py): debts to relatives and moneylenders, borrowers who walked away
        self.shock_risk = hidden.shock_risk(pop.birth_year, p.start.year, pop.expected_income_minor)
        self.walk_away_risk = hidden.walk_away_risk(pop.birth_year, p.start.year, pop.assets_minor,
                                                    pop.expected_income_minor)
        self.informal_debt = np.zeros(n, np.int64)
        self.walked_away = np.zeros(n, bool)

    # 0. hidden risks: life shocks (paid outside the economy) and walk-aways, drawn before anything
    def life_events(self, f: MonthFlows) -> None:
        p, rs = self.p, self.rs
        hit = np.flatnonzero(rs.random(self.n) < p.life_shock_prob * self.shock_risk)
        cost = hidden.lognormal_minor(self.pop.expected_income_minor[hit], p.life_shock_months, rs)
        paid_now = np.minimum(cost, self.cash[hit])
        self.cash[hit] -= paid_now
        self.informal_debt[hit] += cost - paid_now
        f.ext_out[hit] += paid_now
        f.com[hit] += paid_now
        has_open = self.loan_of_party >= 0
        has_open[has_open] = self.book.closed_at_us[self.loan_of_party[has_open]] < 0
        self.walked_away |= has_open & (rs.random(self.n) < p.walk_away_prob * self.walk_away_risk)

    def repay_informal(self, cash: np.ndarray, lo: int, hi: int, f: MonthFlows) -> np.ndarray:
        """Informal debt of parties lo..hi-1 repaid out of `cash` (updated in place); returns the amounts."""
        repay = np.minimum(self.informal_debt[lo:hi], cash)
        cash -= repay
        self.informal_debt[lo:hi] -= repay
        f.ext_out[lo:hi] += repay
        f.com[lo:hi] += repay
        return repay

    # 1. the past lender: applications (during the period only)
    def lend(self, m: Month, f: MonthFlows) -> None:
        p, pop, n_h, rs, re = self.p, self.pop, self.n_h, self.rs, self.re
        cand = np.flatnonzero(self.loan_of_party < 0)
        stress = (self.cash[cand] < pop.expected_income_minor[cand]).astype(np.float64)
        _, approved = credit.choose_borrowers(p, m.t, self.score[cand], self.threshold, stress, self.fraud[cand], rs)
        borrowers = cand[approved]
        cap = np.where(borrowers < n_h, p.household_loan_cap_minor, p.business_loan_cap_minor)
        principal = np.clip(p.loan_income_multiple * pop.declared_income_minor[borrowers] / 12,
                            credit.MIN_PRINCIPAL_MINOR, cap).astype(np.int64)
        offsets = credit.day_offsets_us(len(borrowers), rs)
        self.loan_of_party[borrowers] = len(self.book) + np.arange(len(borrowers))
        self.book.open(borrowers, m.t, offsets, principal,
                       credit.installment_minor(principal, p.loan_installments, p.flat_rate_per_month))
        # the principal is spent at once on what it was borrowed for
        f.loan_in[borrowers] += principal
        payee = credit.loan_purpose_payee(pop, self.shops, borrowers)
        ts = np.minimum(m.start_us + offsets + re.integers(600, 2 * 86_400, len(borrowers)) * US_PER_SECOND,
                        m.start_us + m.length_us - 1)
        cat = np.where(borrowers >= n_h, CATEGORY_INDEX["wholesale"],
                       np.where(pop.sector[borrowers] == 1, CATEGORY_INDEX["durables"], CATEGORY_INDEX["agri_inputs"]))
        local = payee >= 0
        k = int(local.sum())
        f.rows.append(PaymentRows(ts[local], borrowers[local], payee[local], principal[local],
                                  np.full(k, CHANNEL["transfer"], np.int8), np.full(k, KIND["purchase"], np.int8),
                                  cat[local].astype(np.int8)))
        np.add.at(f.received_b, payee[local] - n_h, principal[local])
        f.ext_out[borrowers[~local]] += principal[~local]

    # 1b. installments due at this month's due dates
    def installments_due(self, m: Month) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(due loans, unpaid count per party, installment per party, open installment, installments left)."""
        book, n = self.book, self.n
        due_loans, due_unpaid = book.check(m.t, self.month_start)
        inst_count, inst_amount = np.zeros(n, np.int64), np.zeros(n, np.int64)
        inst_count[book.party[due_loans]] = due_unpaid
        inst_amount[book.party[due_loans]] = book.installment_minor[due_loans]
        # every open loan's installment and installments left (for the household's reserve)
        open_loans = np.flatnonzero(book.closed_at_us < 0)
        loan_inst, loan_left = np.zeros(n, np.int64), np.zeros(n, np.int64)
        loan_inst[book.party[open_loans]] = book.installment_minor[open_loans]
        loan_left[book.party[open_loans]] = book.n_installments - book.paid_count[open_loans]
        return due_loans, inst_count, inst_amount, loan_inst, loan_left

    # 2. payroll out of last month's cash
    def payroll(self, m: Month, f: MonthFlows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (payroll due per business, wage received per household, missed wage?)."""
        pop, n_h, n_b = self.pop, self.n_h, self.n_b
        cash_b = self.cash[n_h:]  # a view: updates write through
        paid_emp, paid_wage, payroll_due = biz.pay_payroll(pop, self.employed, cash_b, self.rs)
        payroll_paid = np.bincount(pop.employer[paid_emp], weights=paid_wage, minlength=n_b).astype(np.int64)
        cash_b -= payroll_paid
        f.com[n_h:] += payroll_paid
        wage_in = np.zeros(n_h, np.int64)
        wage_in[paid_emp] = paid_wage
        was_paid = np.zeros(n_h, bool)
        was_paid[paid_emp] = True
        missed_wage = self.employed & (pop.employer >= 0) & ~was_paid
        f.rows.append(simple_rows(payday_ts(m.start_us, pop.payday[pop.employer[paid_emp]], self.re),
                                  pop.employer[paid_emp] + n_h, paid_emp, paid_wage, "payroll", "wage", NO_CATEGORY))
        return payroll_due, wage_in, missed_wage

    # 3. harvest sales to co-ops, which sell the crop outside the economy at a margin
    def harvest(self, m: Month, crop_mult: np.ndarray, f: MonthFlows) -> np.ndarray:
        """Returns the harvest sales received per household."""
        pop, n_h, n_b = self.pop, self.n_h, self.n_b
        share = HARVEST_SHARE[pop.crop, m.of_year]
        growers = np.flatnonzero((pop.farm_annual_minor > 0) & (share > 0))
        value = (pop.farm_annual_minor[growers] * share[growers] * crop_mult[pop.region[growers], pop.crop[growers]]
                 * np.exp(self.rs.normal(0, 1, len(growers)) * pop.volatility[growers]))
        value = np.maximum(value, 1).astype(np.int64)
        buyer = pop.harvest_buyer[growers]
        bought = np.bincount(buyer, weights=value, minlength=n_b)
        crop_sales = (bought * (1.05 + 0.15 * self.b_mq)).astype(np.int64)
        bought = np.rint(bought).astype(np.int64)
        self.cash[n_h:] += crop_sales - bought
        f.ext_in[n_h:] += crop_sales
        f.com[n_h:] += bought
        f.inc[n_h:] += crop_sales
        f.rows.append(simple_rows(random_ts(m.start_us, m.length_us, len(growers), self.re), buyer + n_h, growers,
                                  value, "transfer", "harvest_sale", NO_CATEGORY))
        harvest_in = np.zeros(n_h, np.int64)
        harvest_in[growers] = value
        assert np.all(self.cash >= 0)
        return harvest_in

    # 4. households: essentials floor, installments, rest of essentials, bills, discretionary
    def households(self, m: Month, income_h: np.ndarray, inst_count: np.ndarray, inst_amount: np.ndarray,
                   loan_inst: np.ndarray, loan_left: np.ndarray, bill_amounts: np.ndarray, out: EventOut,
                   f: MonthFlows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Returns (installments paid, pending bills paid?, bill status, bills paid) per household."""
        p, pop, n_h, n_b, disc = self.p, self.pop, self.n_h, self.n_b, self.disc[: self.n_h]
        f.inc[:n_h] += income_h
        hcash = self.cash[:n_h] + income_h
        need = hh.essential_needs(pop.ess_need_minor, pop.crop, m.of_year)
        # a floor of essentials first, then the loan (households protect their credit),
        # then the rest of essentials, then bills
        ess_floor = hh.scale_rows((need * hh.ESSENTIAL_FLOOR).astype(np.int64), hcash)
        hcash -= ess_floor.sum(axis=1)
        self.repay_informal(hcash, 0, n_h, f)  # the moneylender comes first
        n_inst = hh.pay_installments(hcash, inst_count[:n_h], inst_amount[:n_h],
                                     ~self.fraud[:n_h] & ~self.walked_away[:n_h])
        hcash -= n_inst * inst_amount[:n_h]
        ess_rest = hh.scale_rows(need - ess_floor, hcash)
        hcash -= ess_rest.sum(axis=1)
        ess_paid = ess_floor + ess_rest
        # a borrower who walked away stops paying every formal creditor, the utilities too
        pay_pending, status, bills_paid = bill_model.settle(np.where(self.walked_away[:n_h], 0, hcash),
                                                            bill_amounts[:n_h],
                                                            self.pending.total_by_party[:n_h], disc, self.rs)
        hcash -= bills_paid
        f.cut[:n_h] = ess_rest.sum(axis=1) + bills_paid
        want = hh.discretionary_wants(pop.disc_want_minor, m.of_year)
        reserve = hh.reserve_minor(disc, self.ess_base_total, loan_inst[:n_h], loan_left[:n_h])
        budget = np.floor(hh.spend_propensity(disc) * np.maximum(hcash - reserve, 0)).astype(np.int64)
        disc_paid = hh.scale_rows(want, budget)
        hcash -= disc_paid.sum(axis=1)
        assert np.all(hcash >= 0), "a household spent more than it had"
        spend = ess_paid + disc_paid
        refunds_h = np.zeros(n_h, np.int64)
        if m.emit:
            for h0 in range(0, n_h, p.chunk_parties):
                h1 = min(n_h, h0 + p.chunk_parties)
                rows, refunds = household_purchases(pop, self.shops, h0, spend[h0:h1], self.base_spend[h0:h1],
                                                    p.shop_loyalty, p.refund_prob, m.start_us, m.length_us, self.re)
                net = np.bincount(rows.payee - n_h, weights=rows.amount_minor, minlength=n_b)
                net -= np.bincount(refunds.payer - n_h, weights=refunds.amount_minor, minlength=n_b)
                f.received_b += np.rint(net).astype(np.int64)
                refunds_h[h0:h1] = np.rint(np.bincount(refunds.payee - h0, weights=refunds.amount_minor,
                                                       minlength=h1 - h0)).astype(np.int64)
                for part in (rows, refunds):
                    f.tally(part)
                    out.payments(part)
        else:  # beyond the period: same money, no individual payments
            for j in range(spend.shape[1]):
                f.received_b += np.rint(np.bincount(self.shops[:, SHOP_SLOT_OF_CATEGORY[j]], weights=spend[:, j],
                                                    minlength=n_b)).astype(np.int64)
        hcash += refunds_h
        self.cash[:n_h] = hcash
        f.com[:n_h] += ess_paid.sum(axis=1) + bills_paid + n_inst * inst_amount[:n_h]
        f.dsc[:n_h] += disc_paid.sum(axis=1) - refunds_h
        f.loan_out[:n_h] += n_inst * inst_amount[:n_h]
        return n_inst, pay_pending, status, bills_paid

    # 5. businesses: sales in, then overheads, bills, installments, invoices, restocking, owner's draw
    def businesses(self, m: Month, payroll_due: np.ndarray, demand: np.ndarray, inst_count: np.ndarray,
                   inst_amount: np.ndarray, bill_amounts: np.ndarray, f: MonthFlows):
        """Returns (installments paid, pending bills paid?, bill status, bills paid, settled invoices, receipts, outside sales)."""
        pop, n_h, n_b, rs, re = self.pop, self.n_h, self.n_b, self.rs, self.re
        cash_b = self.cash[n_h:]  # a view: updates write through
        outside = biz.outside_sales(pop, payroll_due, demand, self.b_vol, rs)
        cash_b += f.received_b + outside
        f.ext_in[n_h:] += outside
        f.inc[n_h:] += f.received_b + outside
        overhead = np.minimum(pop.overhead_minor, cash_b)
        cash_b -= overhead
        self.repay_informal(cash_b, n_h, self.n, f)
        pay_pending, status, bills_paid = bill_model.settle(np.where(self.walked_away[n_h:], 0, cash_b),
                                                            bill_amounts[n_h:],
                                                            self.pending.total_by_party[n_h:], self.b_disc, rs)
        cash_b -= bills_paid
        n_inst = hh.pay_installments(cash_b, inst_count[n_h:], inst_amount[n_h:], ~self.walked_away[n_h:])
        cash_b -= n_inst * inst_amount[n_h:]
        f.loan_out[n_h:] += n_inst * inst_amount[n_h:]
        o_buyer, o_supplier, o_amount = biz.stock_orders(pop, self.revenue_ewma, self.stressed, self.b_vol, rs)
        issued = m.start_us + re.integers(0, 28 * 86_400, len(o_amount)) * US_PER_SECOND
        self.invoices.issue(o_buyer, o_supplier, o_amount, issued, pop.payment_terms_days[o_supplier],
                            self.month_start)
        settled, paid_by_buyer = self.invoices.settle(m.t, cash_b.copy(), self.b_disc, m.start_us, m.length_us, re)
        cash_b -= paid_by_buyer
        receipts = np.rint(np.bincount(settled["supplier"], weights=settled["amount_minor"],
                                       minlength=n_b)).astype(np.int64)
        cash_b += receipts
        f.inc[n_h:] += receipts
        k = len(settled["paid_us"])
        f.rows.append(PaymentRows(settled["paid_us"], settled["buyer"] + n_h, settled["supplier"] + n_h,
                                  settled["amount_minor"], np.full(k, CHANNEL["transfer"], np.int8),
                                  np.full(k, KIND["transfer"], np.int8),
                                  np.full(k, CATEGORY_INDEX["wholesale"], np.int8)))
        sales = f.received_b + outside + receipts
        restock = np.minimum((biz.external_stock_share(pop) * sales).astype(np.int64), cash_b)
        cash_b -= restock
        target = 2.0 * (payroll_due + pop.overhead_minor) * (0.5 + self.b_mq)
        draw = (biz.owner_draw_propensity(self.b_disc) * np.maximum(cash_b - target, 0)).astype(np.int64)
        cash_b -= draw
        assert np.all(self.cash >= 0), "a business spent more than it had"
        f.ext_out[n_h:] += overhead + restock + draw
        f.com[n_h:] += overhead + bills_paid + n_inst * inst_amount[n_h:] + paid_by_buyer + restock
        f.cut[n_h:] = paid_by_buyer + restock
        f.dsc[n_h:] += draw
        return n_inst, pay_pending, status, bills_paid, settled, sales

    # 7. bills: last month's deferred bills resolved; this month's settled or deferred
    def bill_rows(self, m: Month, bill_amounts: np.ndarray, paid_pending: np.ndarray,
                  status: np.ndarray) -> tuple[bill_model.BillRows, bill_model.BillRows]:
        resolved = bill_model.resolve_pending(self.pending.rows, paid_pending, m.start_us, self.re)
        settled, deferred = bill_model.rows_for_month(np.arange(self.n), bill_amounts, status, self.bill_due_day,
                                                      m.start_us, m.length_us, self.re)
        self.pending = bill_model.PendingBills(deferred, np.rint(np.bincount(
            deferred.party, weights=deferred.amount_minor, minlength=self.n)).astype(np.int64))
        return bill_model.BillRows.concat([resolved, settled]), deferred

    # 9. jobs and customers move; businesses' trend and stress update
    def move(self, missed_wage: np.ndarray, payroll_due: np.ndarray, sales: np.ndarray) -> None:
        p, pop, n_h, rs = self.p, self.pop, self.n_h, self.rs
        employer_stressed = np.zeros(n_h, bool)
        has_emp = pop.employer >= 0
        employer_stressed[has_emp] = self.stressed[pop.employer[has_emp]]
        p_sep = p.job_separation_prob * (1 + 4 * pop.volatility[:n_h]) + 0.25 * missed_wage + 0.05 * employer_stressed
        leaves = self.employed & (rs.random(n_h) < p_sep)
        finds = ~self.employed & (rs.random(n_h) < p.job_finding_prob)
        self.employed = (self.employed & ~leaves) | finds
        self.stressed = self.cash[n_h:] < payroll_due + pop.overhead_minor
        p_switch = 0.01 + 0.15 * self.stressed[self.shops] + 0.02 * (1 - self.b_mq[self.shops])
        switch_h, switch_slot = np.nonzero(rs.random(self.shops.shape) < p_switch)
        if len(switch_h):
            self.shops[switch_h, switch_slot] = pick_in_region_or_sector(
                pop.shop_picker_regional, pop.shop_picker_sector, pop.region[switch_h], SHOP_SECTOR_SLOT[switch_slot],
                len(BUSINESS_SECTOR_LIST), rs)
        self.revenue_ewma = 0.7 * self.revenue_ewma + 0.3 * sales


def simulate(params: SimParams, raw_dir: Path, truth_dir: Path, progress: bool = True,
             console=None) -> SimReport:
    """Run the economy and write raw events to raw_dir and ground truth to truth_dir."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    t0 = time.perf_counter()
    p = params
    seeds = np.random.SeedSequence(p.seed).spawn(6)
    rng_pop, rng_state, rng_event, rng_mc, rng_party, rng_loan_mc = (np.random.default_rng(s) for s in seeds)
    pop = build_population(p, rng_pop)
    n_h = pop.n_households
    months_total = p.months + HORIZON_MONTHS
    month_start = month_starts_us(p.start, months_total)
    end_us = int(month_start[p.months])

    raw_tmp, truth_tmp = prepare_staging(Path(raw_dir)), prepare_staging(Path(truth_dir))
    out = EventOut(raw_tmp, pop.party_ids, p.rows_per_file)
    tw = truth.TruthWriter(truth_tmp, pop)
    out.table("parties", parties_table(pop, int(month_start[0]), rng_party))
    eco = Economy(p, pop, month_start, rng_state, rng_event)
    series = truth.Series(months_total, pop.n_parties)
    phases: dict[str, float] = {"population": time.perf_counter() - t0}
    snapshot = None

    columns = [TextColumn("[bold]simulate"), BarColumn(), TextColumn("{task.description}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, disable=not progress, transient=False) as bar:
        task = bar.add_task("", total=months_total)
        for t in range(months_total):
            m = Month(t, int(month_start[t]), int(month_start[t + 1] - month_start[t]),
                      (p.start.month - 1 + t) % 12, t < p.months)
            bar.update(task, description=f"month {t + 1}/{p.months}" if m.emit else "12-month horizon (truth only)")
            shocks = draw_shocks(p, pop.climate_risk, m.of_year, 1, eco.rs)
            series.cash_start[t] = eco.cash
            if m.emit:
                tp = time.perf_counter()
                tw.pd(t, month_start[t], truth.true_pd(p, pop, m.of_year, eco.cash, eco.employed, eco.stressed,
                                                       eco.revenue_ewma, eco.book, rng_mc))
                phases["true_pd"] = phases.get("true_pd", 0.0) + time.perf_counter() - tp
                tp = time.perf_counter()
                loans = loan_truth.open_loans(eco.book, t)
                state = loan_truth.LoanState(eco.cash, eco.employed, eco.stressed, eco.revenue_ewma,
                                             eco.informal_debt, eco.walked_away, eco.pending.total_by_party,
                                             eco.shock_risk, eco.walk_away_risk)
                tw.loan_pd(pop, eco.book, loans, t, int(month_start[t]), loan_truth.default_probabilities(
                    p, pop, eco.book, loans, t, month_start, state, rng_loan_mc))
                phases["loan_true_pd"] = phases.get("loan_true_pd", 0.0) + time.perf_counter() - tp
            te = time.perf_counter()
            f = MonthFlows(pop.n_parties, pop.n_businesses)
            eco.life_events(f)
            if m.emit:
                eco.lend(m, f)
            due_loans, inst_count, inst_amount, loan_inst, loan_left = eco.installments_due(m)
            payroll_due, wage_in, missed_wage = eco.payroll(m, f)
            harvest_in = eco.harvest(m, shocks.crop_multiplier[0], f)
            bill_amounts = bill_model.month_bills(eco.bill_base, m.of_year, eco.rs)
            n_inst_h, pending_h, status_h, bills_h = eco.households(
                m, wage_in + harvest_in, inst_count, inst_amount, loan_inst, loan_left, bill_amounts, out, f)
            n_inst_b, pending_b, status_b, bills_b, settled, sales = eco.businesses(
                m, payroll_due, shocks.factory_demand[0], inst_count, inst_amount, bill_amounts, f)
            # 6. loans: record installments paid
            n_paid = np.r_[n_inst_h, n_inst_b]
            eco.book.pay(due_loans, n_paid[eco.book.party[due_loans]], t, month_start)
            status = np.r_[status_h, status_b]
            series.late_bills[t] = (status >= bill_model.LATE) & (bill_amounts.sum(axis=1) > 0)
            bills_paid = np.r_[bills_h, bills_b]
            bill_rows, deferred = eco.bill_rows(m, bill_amounts, np.r_[pending_h, pending_b], status)

            # 8. the month's events out; the truth of the month
            other = PaymentRows.concat(f.rows)
            f.tally(other)
            if m.emit:
                out.payments(other)
                out.bills(bill_rows)
                out.invoices(settled, n_h)
                if t == p.months - 1:  # period end: what is still open is written as unpaid
                    out.bills(deferred)
                    out.invoices(eco.invoices.open_rows(end_us), n_h)
                    snapshot = eco.book.snapshot_at(end_us, month_start, p.months)
                tw.cash(t, month_start[t], series.cash_start[t], np.rint(f.pay_in).astype(np.int64),
                        np.rint(f.pay_out).astype(np.int64), bills_paid, f.loan_in, f.loan_out, f.ext_in,
                        f.ext_out, eco.cash)
                series.seen_in[t] = f.pay_in
                series.seen_out[t] = f.pay_out + bills_paid
            series.record(t, f.inc, f.com, f.dsc, f.cut)
            eco.move(missed_wage, payroll_due, sales)
            phases["months"] = phases.get("months", 0.0) + time.perf_counter() - te
            bar.advance(task)

    assert snapshot is not None
    out.table("loans", credit.loans_table(snapshot, pop.party_ids, p.lender_name, month_start))
    tf = time.perf_counter()
    rows = out.close()
    phases["flush"] = time.perf_counter() - tf
    tt = time.perf_counter()
    realism = truth.finish(tw, p, pop, series, snapshot, month_start,
                           eco.book.snapshot_at(int(month_start[months_total]), month_start, months_total))
    phases["truth"] = time.perf_counter() - tt
    seconds = time.perf_counter() - t0
    tw.summary(p, rows, realism, seconds)
    publish(raw_tmp, Path(raw_dir))
    publish(truth_tmp, Path(truth_dir))
    return SimReport(p, Path(raw_dir), Path(truth_dir), rows, realism, seconds, phases)
