"""Utility and telecom bills: due on a party's fixed day each month; paid on time, late, or deferred.

A party that cannot cover its bills defers them to next month; deferred bills are paid
first next month if cash allows, else never (paid_at stays null). Careless parties
(low discipline) and parties with little cash left pay late within the month.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fieldbank.simulate.params import ELECTRICITY_MULTIPLIER, US_PER_DAY, US_PER_SECOND

ON_TIME, LATE, DEFERRED = 0, 1, 2


@dataclass
class BillRows:
    party: np.ndarray
    kind: np.ndarray  # index into contract.BILLER_KINDS
    due_us: np.ndarray
    amount_minor: np.ndarray
    paid_us: np.ndarray  # -1 = unpaid

    @staticmethod
    def concat(parts: list["BillRows"]) -> "BillRows":
        return BillRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "party", "kind", "due_us", "amount_minor", "paid_us")))


@dataclass
class PendingBills:
    """Bills deferred from last month (rows) and their total per party."""

    rows: BillRows
    total_by_party: np.ndarray


def month_bills(base_minor: np.ndarray, month_of_year: int, rng: np.random.Generator) -> np.ndarray:
    """parties x 3 (electricity, water, telecom) bill amounts for this month; 0 = no bill."""
    noise = np.exp(rng.normal(0.0, 0.08, base_minor.shape))
    amounts = base_minor * noise
    amounts[:, 0] *= ELECTRICITY_MULTIPLIER[month_of_year]
    return np.where(base_minor > 0, np.maximum(amounts, 1), 0).astype(np.int64)


def settle(avail: np.ndarray, amounts: np.ndarray, pending: np.ndarray, discipline: np.ndarray,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (pending paid?, status of this month's bills, cash paid in total) per party."""
    pay_pending = (pending > 0) & (avail >= pending)
    left = avail - np.where(pay_pending, pending, 0)
    total = amounts.sum(axis=1)
    can = left >= total
    careless = rng.random(len(avail)) < 0.30 * (1 - discipline) ** 2
    tight = (left - total < 0.5 * total + 20_000) & (rng.random(len(avail)) < 0.6)
    status = np.where(~can, DEFERRED, np.where(careless | tight, LATE, ON_TIME)).astype(np.int8)
    paid = np.where(pay_pending, pending, 0) + np.where(status < DEFERRED, total, 0)
    assert np.all(paid <= np.maximum(avail, 0))
    return pay_pending, status, paid


def rows_for_month(parties: np.ndarray, amounts: np.ndarray, status: np.ndarray, due_day: np.ndarray,
                   month_start_us: int, month_len_us: int, rng: np.random.Generator) -> tuple[BillRows, BillRows]:
    """(settled rows of this month, deferred rows) for the given parties' bills."""
    p_idx, kind = np.nonzero(amounts)
    amount = amounts[p_idx, kind]
    st = status[p_idx]
    due = month_start_us + due_day[parties[p_idx]] * US_PER_DAY + 12 * 3600 * US_PER_SECOND
    n = len(amount)
    early = rng.integers(0, 3 * 86_400, n) * US_PER_SECOND
    late = rng.integers(86_400, 10 * 86_400, n) * US_PER_SECOND
    paid = np.where(st == ON_TIME, np.maximum(due - early, month_start_us),
                    np.minimum(due + late, month_start_us + month_len_us - 1))
    settled = st < DEFERRED
    mk = lambda m, paid_us: BillRows(parties[p_idx[m]].astype(np.int64), kind[m].astype(np.int8), due[m],
                                     amount[m], paid_us)
    return mk(settled, paid[settled]), mk(~settled, np.full(int((~settled).sum()), -1, np.int64))


def resolve_pending(rows: BillRows, paid_party: np.ndarray, month_start_us: int,
                    rng: np.random.Generator) -> BillRows:
    """Deferred bills: paid early this month if the party paid them, else never."""
    paid = paid_party[rows.party]
    paid_us = np.where(paid, month_start_us + rng.integers(0, 5 * 86_400, len(paid)) * US_PER_SECOND
                       + rng.integers(1, 3600, len(paid)) * US_PER_SECOND, -1)
    return BillRows(rows.party, rows.kind, rows.due_us, rows.amount_minor, paid_us)
