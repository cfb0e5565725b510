"""Households: income in (wages, harvest sales), then spending in a fixed order of priority.

Order each month: essentials (food, health, school, farm inputs), then bills (last month's
deferred ones first), then loan installments, then discretionary spending, which follows a
buffer-stock rule: spend at most a share of cash on hand that falls with discipline. When
cash runs short a household first cuts discretionary spending, then pays bills late, then
misses installments, and only then cuts essentials: stress shows before default does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fieldbank.simulate.params import (
    EDUCATION_MULTIPLIER,
    FESTIVAL_MULTIPLIER,
    HOUSEHOLD_CATEGORIES,
    PLANTING_MONTHS,
    CROPS,
)

EDU = HOUSEHOLD_CATEGORIES.index("education")
AGRI = HOUSEHOLD_CATEGORIES.index("agri_inputs")
# Planting months per crop as a (crops x 12) share of the year's farm inputs.
PLANTING_SHARE = np.zeros((len(CROPS), 12))
for _c, _crop in enumerate(CROPS):
    PLANTING_SHARE[_c, list(PLANTING_MONTHS[_crop])] = 12.0 / len(PLANTING_MONTHS[_crop])


# Share of essential needs paid before loan installments; the rest is cut first when short.
ESSENTIAL_FLOOR = 0.6


def spend_propensity(discipline: np.ndarray) -> np.ndarray:
    """Largest share of cash above the reserve spent on discretionary items in a month."""
    return 0.22 + 0.40 * (1.0 - discipline)


def reserve_minor(discipline: np.ndarray, essentials_minor: np.ndarray, installment_minor: np.ndarray,
                  installments_left: np.ndarray) -> np.ndarray:
    """Cash a household keeps back from discretionary spending.

    Disciplined households keep up to two months of essentials and set aside the next
    few loan installments; careless ones keep almost nothing.
    """
    months_of_installments = np.minimum(installments_left, np.round(1 + 5 * discipline))
    return 2.0 * discipline * essentials_minor + installment_minor * months_of_installments


@dataclass
class HouseholdMonth:
    """One month's decisions, per household; amounts in minor units."""

    income_minor: np.ndarray  # wages + harvest sales received
    essentials_minor: np.ndarray  # households x categories, paid
    discretionary_minor: np.ndarray  # households x categories, paid
    bills_paid_minor: np.ndarray
    installments_paid: np.ndarray  # number of installments paid (per household)
    installments_minor: np.ndarray
    cash_before_discretionary: np.ndarray


def essential_needs(ess_base: np.ndarray, crop: np.ndarray, month_of_year: int) -> np.ndarray:
    need = ess_base.astype(np.float64)
    need[:, EDU] *= EDUCATION_MULTIPLIER[month_of_year]
    need[:, AGRI] *= PLANTING_SHARE[crop, month_of_year]
    return need.astype(np.int64)


def discretionary_wants(disc_base: np.ndarray, month_of_year: int) -> np.ndarray:
    return (disc_base * FESTIVAL_MULTIPLIER[month_of_year]).astype(np.int64)


def scale_rows(matrix: np.ndarray, budget: np.ndarray) -> np.ndarray:
    """Scale each row down so it sums to at most budget (integer, never above the row)."""
    total = matrix.sum(axis=1)
    f = np.where(total > budget, budget / np.maximum(total, 1), 1.0)
    out = np.floor(matrix * f[:, None]).astype(np.int64)
    assert np.all(out.sum(axis=1) <= np.maximum(budget, 0))
    return out


def pay_installments(cash: np.ndarray, unpaid_count: np.ndarray, installment: np.ndarray,
                     will_pay: np.ndarray) -> np.ndarray:
    """Whole installments paid, oldest first, out of cash (0 for those who will not pay)."""
    affordable = cash // np.maximum(installment, 1)
    return np.where(will_pay, np.minimum(unpaid_count, affordable), 0).astype(np.int64)
