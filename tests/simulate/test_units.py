"""The building blocks: exact payment splits, the loan book's DPD rules, the invoice book."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fieldbank.simulate.credit import DEFAULT_DPD, WRITE_OFF_DPD, LoanBook
from fieldbank.simulate.params import US_PER_DAY, month_starts_us
from fieldbank.simulate.payments import split_exact
from fieldbank.simulate.supply import InvoiceBook

MONTHS = month_starts_us(dt.date(2023, 1, 1), 40)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10**9), st.integers(1, 40)), min_size=1, max_size=30), st.integers(0, 99))
def test_split_is_exact_and_positive(groups, seed):
    total = np.array([max(t, c) for t, c in groups], dtype=np.int64)
    counts = np.array([c for _, c in groups], dtype=np.int64)
    parts = split_exact(total, counts, np.random.default_rng(seed))
    assert len(parts) == counts.sum() and parts.min() >= 1
    ends = np.cumsum(counts)
    sums = np.add.reduceat(parts, ends - counts)
    assert np.array_equal(sums, total)


def _book() -> LoanBook:
    book = LoanBook(12)
    book.open(np.array([0, 1]), 0, np.array([5 * US_PER_DAY + 1, 5 * US_PER_DAY + 1]),
              np.array([120_000, 120_000]), np.array([11_800, 11_800]))
    return book


def test_a_loan_that_is_never_paid_defaults_at_90_dpd_and_is_written_off_at_180():
    book = _book()
    for month in range(1, 9):
        loans, unpaid = book.check(month, MONTHS)
        paid = np.where(book.party[loans] == 0, unpaid, 0)  # party 0 pays, party 1 never
        book.pay(loans, paid, month, MONTHS)
    first_due = MONTHS[1] + 5 * US_PER_DAY + 1
    assert book.defaulted_at_us[1] == first_due + DEFAULT_DPD * US_PER_DAY
    assert book.written_off[1] and book.closed_at_us[1] == first_due + WRITE_OFF_DPD * US_PER_DAY
    assert book.defaulted_at_us[0] == -1 and book.max_dpd[0] == 0 and book.paid_count[0] == 8


def test_a_late_loan_that_catches_up_keeps_its_max_dpd_and_closes_when_repaid():
    book = _book()
    for month in range(1, 16):
        loans, unpaid = book.check(month, MONTHS)
        # party 0 pays nothing for months 1-2, then everything it owes
        paid = np.where((book.party[loans] == 0) & (month < 3), 0, unpaid)
        book.pay(loans, paid, month, MONTHS)
    assert 30 <= book.max_dpd[0] < DEFAULT_DPD and book.defaulted_at_us[0] == -1
    assert book.paid_count[0] == 12 and book.closed_at_us[0] == MONTHS[12] + 5 * US_PER_DAY + 1


def test_the_snapshot_counts_dpd_up_to_the_period_end():
    book = _book()
    for month in range(1, 5):  # period of 5 months; party 1 never pays
        loans, unpaid = book.check(month, MONTHS)
        book.pay(loans, np.where(book.party[loans] == 0, unpaid, 0), month, MONTHS)
    snap = book.snapshot_at(int(MONTHS[5]), MONTHS, 5)
    days = (MONTHS[5] - (MONTHS[1] + 5 * US_PER_DAY + 1)) // US_PER_DAY
    assert snap.max_dpd[1] == days >= DEFAULT_DPD and snap.defaulted_at_us[1] > 0
    assert book.defaulted_at_us[1] == -1  # 89 days at the last due date; the snapshot does not change the book


def test_invoices_are_paid_oldest_first_within_budget():
    book = InvoiceBook()
    issued = np.array([MONTHS[0] + US_PER_DAY, MONTHS[0] + 2 * US_PER_DAY, MONTHS[0] + 3 * US_PER_DAY])
    book.issue(np.array([0, 0, 0]), np.array([1, 1, 1]), np.array([100, 200, 300]), issued,
               np.array([15, 15, 15]), MONTHS)
    paid, by_buyer = book.settle(0, np.array([350, 0]), np.array([1.0, 1.0]), int(MONTHS[0]),
                                 int(MONTHS[1] - MONTHS[0]), np.random.default_rng(0))
    assert list(paid["amount_minor"]) == [100, 200] and by_buyer[0] == 300
    assert np.all(paid["paid_us"] >= paid["issued_us"])
    assert len(book) == 1 and book.amount_minor[0] == 300
