"""Hidden risks: the part of default that no lender's data foretells.

Without them every default in the simulator is announced: cash runs down, spending and bill
payments show it for months, and only then are installments missed. Real portfolios also
default for reasons the data cannot see coming, so the simulator adds two, both documented
in docs/simulator.md and both replayed by the ground truth's Monte Carlo (loan_truth.py):

* **life shocks**: illness, injury, a death in the family, a fire, a theft. A party is hit
  with probability `life_shock_prob` a month (x a risk profile: older heads of household
  fall ill more often, poorer households face more shocks); the cost (lognormal, median `life_shock_months` months of expected
  income) is paid outside the economy at once from cash, and what cash does not cover is
  borrowed from relatives or a moneylender: an **informal debt** no credit file shows,
  repaid before anything but the essential floor (the moneylender comes first).
* **walk-away**: a borrower with an open loan stops servicing it for good, for reasons
  unrelated to cash (migration to a city, the borrower's death, a dispute with the lender,
  neighbours who stopped paying unpunished), with probability `walk_away_prob` a month (x a
  risk profile: the young migrate most, those with few assets have least to lose). It stops paying its utility bills too: the lender
  cannot see it coming, but a portrait can see it once it has happened.
"""

from __future__ import annotations

import numpy as np

SHOCK_COST_SIGMA = 0.6  # of the log cost


def shock_risk(birth_year: np.ndarray, year: int, expected_income_minor: np.ndarray) -> np.ndarray:
    """Multiplier of `life_shock_prob` per party, about 1 on average.

    Older heads of household fall ill more often (x0.6 at 20 or younger to x1.4 at 70+), and
    poorer households face more shocks (unsafe work, poor housing, no preventive care):
    x (median income / income)^0.7, between x0.3 and x3."""
    age = year - birth_year.astype(np.float64)
    income = np.maximum(expected_income_minor, 1).astype(np.float64)
    poverty = np.clip((np.median(income) / income) ** 0.7, 0.3, 3.0)
    return (0.6 + 0.8 * np.clip((age - 20.0) / 50.0, 0.0, 1.0)) * poverty


def walk_away_risk(birth_year: np.ndarray, year: int, assets_minor: np.ndarray,
                   expected_income_minor: np.ndarray) -> np.ndarray:
    """Multiplier of `walk_away_prob` per party, about 1 on average.

    The young migrate (x1.6 at 25 or younger down to x0.4 at 65+), and those with little to
    lose walk away more easily: x2 with no assets, x1 at the median months of income held in
    assets, towards 0 for the richest (a house, land or a shop ties a borrower to the place)."""
    age = year - birth_year.astype(np.float64)
    asset_months = assets_minor / np.maximum(expected_income_minor, 1).astype(np.float64)
    return (1.6 - 1.2 * np.clip((age - 25.0) / 40.0, 0.0, 1.0)) * 2.0 / (1.0 + asset_months / np.median(asset_months))


def lognormal_minor(income_minor: np.ndarray, median_months: float, rng: np.random.Generator) -> np.ndarray:
    """A life shock's cost (one per given party): median `median_months` of income."""
    z = rng.standard_normal(income_minor.shape)
    return (income_minor * median_months * np.exp(SHOCK_COST_SIGMA * z)).astype(np.int64)
