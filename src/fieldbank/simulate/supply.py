"""The supply chain: businesses order stock from their suppliers on invoices with due dates.

Buyers settle invoices oldest first out of the cash left after payroll, overheads, bills
and loan installments; what they cannot pay stays open and is paid late (or never).
Each settlement is also a bank transfer in the payments table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fieldbank.simulate.params import US_PER_DAY, US_PER_SECOND

MAX_OPEN_INVOICES = 200_000_000  # a limit on the open book; far above any supported size


def _empty() -> np.ndarray:
    return np.zeros(0, np.int64)


@dataclass
class InvoiceBook:
    """Open (unpaid) invoices as parallel arrays; business indices b."""

    invoice_no: np.ndarray = field(default_factory=_empty)
    buyer: np.ndarray = field(default_factory=_empty)
    supplier: np.ndarray = field(default_factory=_empty)
    amount_minor: np.ndarray = field(default_factory=_empty)
    issued_us: np.ndarray = field(default_factory=_empty)
    due_us: np.ndarray = field(default_factory=_empty)
    due_month: np.ndarray = field(default_factory=_empty)
    next_no: int = 0

    def __len__(self) -> int:
        return len(self.invoice_no)

    def issue(self, buyer: np.ndarray, supplier: np.ndarray, amount: np.ndarray, issued_us: np.ndarray,
              terms_days: np.ndarray, month_start_us: np.ndarray) -> None:
        assert np.all(amount >= 1)
        due = issued_us + terms_days * US_PER_DAY
        due_month = np.searchsorted(month_start_us, due, side="right") - 1
        n = len(amount)
        self.invoice_no = np.concatenate([self.invoice_no, self.next_no + np.arange(n, dtype=np.int64)])
        self.next_no += n
        self.buyer = np.concatenate([self.buyer, buyer])
        self.supplier = np.concatenate([self.supplier, supplier])
        self.amount_minor = np.concatenate([self.amount_minor, amount])
        self.issued_us = np.concatenate([self.issued_us, issued_us])
        self.due_us = np.concatenate([self.due_us, due])
        self.due_month = np.concatenate([self.due_month, due_month])
        assert len(self) <= MAX_OPEN_INVOICES

    def settle(self, month: int, budget: np.ndarray, discipline: np.ndarray, month_start_us: int,
               month_len_us: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
        """Pay due invoices oldest first within each buyer's budget; remove them from the book.

        Returns (the paid invoices with paid_us, paid amount per buyer).
        """
        payable = np.flatnonzero(self.due_month <= month)
        order = payable[np.lexsort((self.due_us[payable], self.buyer[payable]))]
        buyer = self.buyer[order]
        cum = np.cumsum(self.amount_minor[order])
        first = np.r_[True, buyer[1:] != buyer[:-1]] if len(order) else np.zeros(0, bool)
        start_idx = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0)) if len(order) else order
        before = np.where(start_idx > 0, cum[np.maximum(start_idx - 1, 0)], 0)
        within = cum - before
        pay = within <= budget[buyer]
        paid = order[pay]
        # on-time invoices are paid around the due date (careless owners a few days after);
        # overdue ones some day this month
        n = len(paid)
        on_time = self.due_month[paid] == month
        careless = rng.random(n) < 0.35 * (1 - discipline[self.buyer[paid]]) ** 2
        around_due = np.where(careless, self.due_us[paid] + rng.integers(1, 8, n) * US_PER_DAY,
                              self.due_us[paid] - rng.integers(0, 3 * 86_400, n) * US_PER_SECOND)
        paid_us = np.where(on_time, around_due, month_start_us + rng.integers(0, month_len_us, n))
        paid_us = np.clip(paid_us, np.maximum(self.issued_us[paid], month_start_us), month_start_us + month_len_us - 1)
        out = {name: getattr(self, name)[paid] for name in
               ("invoice_no", "buyer", "supplier", "amount_minor", "issued_us", "due_us")}
        out["paid_us"] = paid_us
        paid_by_buyer = np.bincount(out["buyer"], weights=out["amount_minor"], minlength=len(budget))
        paid_by_buyer = np.rint(paid_by_buyer).astype(np.int64)
        assert np.all(paid_by_buyer <= np.maximum(budget, 0))
        keep = np.ones(len(self), bool)
        keep[paid] = False
        for name in ("invoice_no", "buyer", "supplier", "amount_minor", "issued_us", "due_us", "due_month"):
            setattr(self, name, getattr(self, name)[keep])
        return out, paid_by_buyer

    def open_rows(self, before_us: int) -> dict:
        """Invoices issued before `before_us` and still unpaid (written with paid_at null)."""
        m = self.issued_us < before_us
        out = {name: getattr(self, name)[m] for name in
               ("invoice_no", "buyer", "supplier", "amount_minor", "issued_us", "due_us")}
        out["paid_us"] = np.full(int(m.sum()), -1, np.int64)
        return out
