"""The credit history: a past lender that picks borrowers on traditional data only.

Loans are monthly-installment loans; whether an installment is paid is decided by the
borrower's cash in the simulation (households.py / businesses.py), never by a formula.
Days past due are counted from the oldest unpaid installment's due date; the loan defaults
on the day it reaches 90 DPD and is written off at 180 DPD.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fieldbank.simulate.params import US_PER_DAY, US_PER_SECOND, SimParams

DEFAULT_DPD = 90
WRITE_OFF_DPD = 180
MIN_PRINCIPAL_MINOR = 100_000
MAX_PRINCIPAL_MINOR = 50_000_000


def installment_minor(principal_minor: np.ndarray, n: int, flat_rate_per_month: float) -> np.ndarray:
    """Equal installments repaying principal plus flat interest, rounded up to a whole unit."""
    return np.ceil(principal_minor * (1 + flat_rate_per_month * n) / n).astype(np.int64)


def traditional_score(declared_income_minor: np.ndarray, declared_assets_minor: np.ndarray,
                      birth_year: np.ndarray, year: int) -> np.ndarray:
    """What the past lender looks at: declared income, declared assets and age."""
    age = year - birth_year
    assets = np.where(declared_assets_minor >= 0, declared_assets_minor, 0)
    return (np.log(declared_income_minor + 100_000.0) + 0.5 * np.log(assets + 100_000.0)
            - 0.4 * (declared_assets_minor < 0) - 0.0008 * (age - 42.0) ** 2)


@dataclass
class LoanBook:
    """All loans of the past lender (at most one per party), as parallel arrays."""

    n_installments: int
    party: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    open_month: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    day_offset_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    principal_minor: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    installment_minor: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    paid_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    max_dpd: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    defaulted_at_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1 = never
    closed_at_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # -1 = open
    written_off: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.party)

    def open(self, party: np.ndarray, month: int, day_offset_us: np.ndarray, principal: np.ndarray,
             installment: np.ndarray) -> None:
        n = len(party)
        self.party = np.concatenate([self.party, party])
        self.open_month = np.concatenate([self.open_month, np.full(n, month, np.int64)])
        self.day_offset_us = np.concatenate([self.day_offset_us, day_offset_us])
        self.principal_minor = np.concatenate([self.principal_minor, principal])
        self.installment_minor = np.concatenate([self.installment_minor, installment])
        self.paid_count = np.concatenate([self.paid_count, np.zeros(n, np.int64)])
        self.max_dpd = np.concatenate([self.max_dpd, np.zeros(n, np.int64)])
        self.defaulted_at_us = np.concatenate([self.defaulted_at_us, np.full(n, -1, np.int64)])
        self.closed_at_us = np.concatenate([self.closed_at_us, np.full(n, -1, np.int64)])
        self.written_off = np.concatenate([self.written_off, np.zeros(n, bool)])

    def due_us(self, loans: np.ndarray, installment_number: np.ndarray, month_start_us: np.ndarray) -> np.ndarray:
        """Due date of installment j (1-based): same day of month, j months after opening."""
        return month_start_us[self.open_month[loans] + installment_number] + self.day_offset_us[loans]

    def check(self, month: int, month_start_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """At this month's due date: update DPD, default and write-off; return (loan idx, due count).

        Returns the active loans with installments due (unpaid count > 0) so the borrower's
        cash step can pay them.
        """
        active = np.flatnonzero((self.closed_at_us < 0) & (self.open_month < month))
        k = month - self.open_month[active]
        due_count = np.minimum(k, self.n_installments)
        unpaid = due_count - self.paid_count[active]
        late = unpaid > 0
        la = active[late]
        check_us = month_start_us[month] + self.day_offset_us[la]
        oldest_due = self.due_us(la, self.paid_count[la] + 1, month_start_us)
        dpd = (check_us - oldest_due) // US_PER_DAY
        self._record_dpd(la, oldest_due, dpd)
        keep = (self.closed_at_us[active] < 0) & late
        return active[keep], unpaid[keep]

    def _record_dpd(self, loans: np.ndarray, oldest_due_us: np.ndarray, dpd: np.ndarray) -> None:
        self.max_dpd[loans] = np.maximum(self.max_dpd[loans], dpd)
        newly = (dpd >= DEFAULT_DPD) & (self.defaulted_at_us[loans] < 0)
        self.defaulted_at_us[loans[newly]] = oldest_due_us[newly] + DEFAULT_DPD * US_PER_DAY
        off = (dpd >= WRITE_OFF_DPD) & ~self.written_off[loans]
        self.written_off[loans[off]] = True
        self.closed_at_us[loans[off]] = oldest_due_us[off] + WRITE_OFF_DPD * US_PER_DAY

    def pay(self, loans: np.ndarray, n_paid: np.ndarray, month: int, month_start_us: np.ndarray) -> None:
        assert np.all(n_paid >= 0)
        self.paid_count[loans] += n_paid
        assert np.all(self.paid_count <= self.n_installments)
        done = loans[(self.paid_count[loans] == self.n_installments) & (self.closed_at_us[loans] < 0)]
        self.closed_at_us[done] = month_start_us[month] + self.day_offset_us[done]

    def snapshot_at(self, end_us: int, month_start_us: np.ndarray, months_elapsed: int) -> "LoanBook":
        """The credit file as seen at the end of the period: DPD of open loans up to end_us."""
        snap = LoanBook(self.n_installments, **{
            name: getattr(self, name).copy() for name in (
                "party", "open_month", "day_offset_us", "principal_minor", "installment_minor",
                "paid_count", "max_dpd", "defaulted_at_us", "closed_at_us", "written_off")
        })
        open_ = np.flatnonzero(snap.closed_at_us < 0)
        due_count = np.minimum(months_elapsed - snap.open_month[open_] - 1, self.n_installments)
        due_count = np.maximum(due_count, 0)
        # installments due up to the last due date before end_us
        late = open_[snap.paid_count[open_] < due_count]
        oldest_due = snap.due_us(late, snap.paid_count[late] + 1, month_start_us)
        dpd = (end_us - oldest_due) // US_PER_DAY
        snap._record_dpd(late, oldest_due, dpd)
        assert np.all(snap.defaulted_at_us < end_us) and np.all(snap.closed_at_us < end_us)
        return snap


def choose_borrowers(p: SimParams, month: int, candidates_score: np.ndarray, threshold: float,
                     stress: np.ndarray, fraud: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Which candidates apply this month, and which of them the lender approves."""
    p_apply = p.apply_share / max(p.months, 12) * (0.9 + 0.3 * stress)
    p_apply = np.where(fraud, 0.15, p_apply)  # fraud rings apply early and all together
    applies = rng.random(len(candidates_score)) < p_apply
    approved = applies & (candidates_score >= threshold)
    return applies, approved


def day_offsets_us(n: int, rng: np.random.Generator) -> np.ndarray:
    """Day of month 0..27 plus 1..86399 seconds: never exactly midnight, never past day 28."""
    return rng.integers(0, 28, n) * US_PER_DAY + rng.integers(1, 86_400, n) * US_PER_SECOND


def loan_purpose_payee(pop, shops: np.ndarray, borrowers: np.ndarray) -> np.ndarray:
    """Who receives the money a borrower spends its principal on (a party index).

    Farming and mixed households buy farm inputs, wage households durables (their main
    shops); businesses buy stock from their first supplier; -1 = bought outside the economy.
    """
    from fieldbank.simulate.params import SHOP_SECTORS

    n_h = pop.n_households
    payee = np.empty(len(borrowers), np.int64)
    is_h = borrowers < n_h
    h = borrowers[is_h]
    slot = np.where(pop.sector[h] == 1, SHOP_SECTORS.index("online_seller"), SHOP_SECTORS.index("agri_inputs"))
    payee[is_h] = shops[h, slot] + n_h
    b = borrowers[~is_h] - n_h
    has_sup = np.diff(pop.supplier_ptr)[b] > 0
    first_sup = pop.supplier_idx[np.minimum(pop.supplier_ptr[b], max(len(pop.supplier_idx) - 1, 0))]
    # upstream businesses (no local suppliers) buy their stock outside the economy: -1
    payee[~is_h] = np.where(has_sup, first_sup + n_h, -1)
    assert np.all(payee != borrowers)
    return payee


def loans_table(book: LoanBook, party_ids, lender: str, month_start_us: np.ndarray) -> dict:
    """The loans table (contract.LOANS) from a snapshot of the book."""
    import pyarrow as pa

    from fieldbank import contract
    from fieldbank.simulate.writer import take_ids, timestamps

    n = len(book)
    opened = month_start_us[book.open_month] + book.day_offset_us
    last_due = book.due_us(np.arange(n), np.full(n, book.n_installments), month_start_us)
    import pyarrow.compute as pc

    return {
        "loan_id": pc.binary_join_element_wise("L", pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), ""),
        "party_id": take_ids(party_ids, book.party),
        "lender": pa.array([lender] * n, pa.string()),
        "opened_at": timestamps(opened),
        "principal_minor": pa.array(book.principal_minor, pa.int64()),
        "term_days": pa.array(((last_due - opened) // US_PER_DAY).astype(np.int32), pa.int32()),
        "closed_at": timestamps(book.closed_at_us, book.closed_at_us >= 0),
        "max_dpd": pa.array(book.max_dpd.astype(np.int32), pa.int32()),
        "defaulted_at": timestamps(book.defaulted_at_us, book.defaulted_at_us >= 0),
        "written_off": pa.array(book.written_off, pa.bool_()),
    }
