"""Parameters of the synthetic economy, with their defaults, and the calendar of the run.

Every number that shapes the economy lives here so docs/simulator.md can list them and a
test can vary them. Money is integer minor units (fen); rates are plain fractions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import numpy as np

from fieldbank import contract

# Hard limits: the simulator keeps per-party state arrays in memory, so size is bounded.
MAX_PARTIES = 5_000_000
MAX_MONTHS = 120
MIN_PARTIES = 50
# The ground truth keeps ~40 bytes per party and simulated month in memory (truth.Series):
# this bounds it to about 6 GiB.
MAX_PARTY_MONTHS = 150_000_000
# Months simulated after the period (state only, no events) so that every month start of
# the period has 12 months of future for the counterfactual label.
HORIZON_MONTHS = 12
# Real "today" of the project is 2026-11-29: the whole simulated period must lie before it,
# including due dates of invoices issued at the end (up to 60 days after the period).
LATEST_PERIOD_END = dt.date(2026, 9, 1)

US_PER_DAY = 86_400_000_000
US_PER_SECOND = 1_000_000

# Household-facing business sectors and the spending categories they sell.
SHOP_SECTORS = ("grocery", "restaurant", "agri_inputs", "workshop", "online_seller")
# category -> shop sector. Workshops stand in for local services (repairs, clinics,
# schools, transport): the contract has no separate sectors for them.
CATEGORY_SHOP = {
    "food": "grocery",
    "health": "workshop",
    "education": "workshop",
    "agri_inputs": "agri_inputs",
    "leisure": "restaurant",
    "clothing": "online_seller",
    "durables": "online_seller",
    "transport": "workshop",
    "services": "workshop",
}
# Household spending: essentials (share of base monthly income) and discretionary wishes.
# Essentials = a fixed subsistence part (split by SUBSISTENCE_SPLIT) + a share of income: poorer
# households have less slack, which is why income level carries (traditional) signal.
SUBSISTENCE_MINOR = 100_000
SUBSISTENCE_SPLIT = {"food": 0.75, "health": 0.10, "education": 0.15}
ESSENTIAL_SHARES = {"food": 0.15, "health": 0.03, "education": 0.05, "agri_inputs": 0.0}
FARM_INPUT_SHARE = 0.10  # agri inputs of farming income, spent in planting months
DISCRETIONARY_SHARES = {"leisure": 0.08, "clothing": 0.05, "durables": 0.05, "transport": 0.05, "services": 0.03}
# Expected number of payments per month and category at full spending (household: ~30).
PAYMENTS_PER_MONTH = {
    "food": 12.0, "health": 1.0, "education": 0.6, "agri_inputs": 2.0, "leisure": 5.0,
    "clothing": 2.0, "durables": 0.6, "transport": 4.0, "services": 2.0,
}
HOUSEHOLD_CATEGORIES = tuple(CATEGORY_SHOP)  # order of the per-category arrays
BILL_SHARES = {"electricity": 0.030, "water": 0.010, "telecom": 0.020}  # of base income

# Crops: the months (0 = January) their harvest is sold and the months inputs are bought.
CROPS = ("rice", "wheat", "maize", "vegetables", "tea", "cotton")
HARVEST_MONTHS = {
    "rice": (6, 9), "wheat": (5,), "maize": (8, 9), "vegetables": (2, 5, 8, 10),
    "tea": (3, 4, 7), "cotton": (8, 9),
}
PLANTING_MONTHS = {
    "rice": (2, 5), "wheat": (9, 10), "maize": (3, 4), "vegetables": (0, 3, 6, 8),
    "tea": (1,), "cotton": (3,),
}
# Festival peaks of discretionary spending (Spring Festival, Golden Week) and school fees.
FESTIVAL_MULTIPLIER = np.array([1.6, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.3, 1.0, 1.1])
EDUCATION_MULTIPLIER = np.array([0.6, 1.8, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 2.4, 0.6, 0.6, 0.6])
ELECTRICITY_MULTIPLIER = np.array([1.3, 1.2, 1.0, 0.9, 0.9, 1.1, 1.4, 1.4, 1.1, 0.9, 1.0, 1.2])

# Business sectors: share of businesses, cost of goods as a share of revenue, labour share.
BUSINESS_SHARES = {
    "grocery": 0.32, "restaurant": 0.16, "agri_inputs": 0.08, "wholesaler": 0.07,
    "workshop": 0.20, "farm_coop": 0.05, "online_seller": 0.12,
}
COGS_RATIO = {
    "grocery": 0.72, "restaurant": 0.45, "agri_inputs": 0.78, "wholesaler": 0.85,
    "workshop": 0.40, "farm_coop": 0.85, "online_seller": 0.62,
}
LABOUR_SHARE = {
    "grocery": 0.08, "restaurant": 0.20, "agri_inputs": 0.06, "wholesaler": 0.05,
    "workshop": 0.25, "farm_coop": 0.05, "online_seller": 0.10,
}
# Sectors that supply other businesses on invoices (the supply network's hubs).
SUPPLIER_SECTORS = ("wholesaler", "agri_inputs", "farm_coop")
# Sectors that restock from outside the simulated economy instead of from local suppliers.
EXTERNAL_STOCK_SECTORS = ("wholesaler", "farm_coop", "agri_inputs")
PAYMENT_TERMS_DAYS = (15, 30, 45, 60)


@dataclass(frozen=True)
class SimParams:
    """Size, seed and the economy's tunable parameters (defaults are the documented ones)."""

    parties: int = 3000
    months: int = 24
    seed: int = 7
    start: dt.date = dt.date(2023, 1, 1)

    # population
    business_share: float = 0.08
    household_sector_shares: tuple[float, float, float] = (0.40, 0.35, 0.25)  # farming, wage, mixed
    parties_per_region: int = 20_000
    max_regions: int = 60
    median_income_minor: int = 350_000  # household base monthly income, median
    income_sigma: float = 0.55
    fraud_ring_share: float = 0.001  # share of parties in device-sharing fraud rings

    # shocks (per region and month)
    drought_prob: float = 0.03  # times region climate risk (0.5..2)
    flood_prob: float = 0.02
    price_crash_prob: float = 0.02  # per crop and month, hits every region growing it
    job_separation_prob: float = 0.006  # monthly, times (1 + 4 * volatility)
    job_finding_prob: float = 0.30  # monthly

    # behaviour
    shop_loyalty: float = 0.85  # share of a category's payments going to the household's main shop
    refund_prob: float = 0.01  # share of discretionary purchases refunded

    # past lender (the credit history)
    lender_name: str = "rural_credit_coop"
    apply_share: float = 0.34  # share of parties applying at some point of the period
    approval_share: float = 0.65  # share of applicants the traditional cut-off approves
    loan_income_multiple: float = 1.0  # principal = this * declared monthly income, capped:
    household_loan_cap_minor: int = 350_000  # the past lender's product limits
    business_loan_cap_minor: int = 5_000_000
    loan_installments: int = 12
    flat_rate_per_month: float = 0.015  # flat interest per month on the principal

    # hidden risks: what no lender's data shows before it happens (docs/simulator.md)
    life_shock_prob: float = 0.002  # monthly: illness, injury, a death, fire, theft (x age profile)
    life_shock_months: float = 3.0  # median cost in months of expected income (lognormal, sigma 0.6)
    walk_away_prob: float = 0.001  # monthly, per open loan: stops servicing it for reasons unrelated to cash

    # ground truth
    pd_paths: int = 8  # Monte Carlo paths per party and month start for true_pd_12m
    loan_pd_paths: int = 128  # Monte Carlo paths per open loan and month start for loan_pd_monthly

    # output
    chunk_parties: int = 100_000  # households per payment chunk (bounds memory)
    rows_per_file: int = 25_000_000

    def __post_init__(self) -> None:
        if not MIN_PARTIES <= self.parties <= MAX_PARTIES:
            raise ValueError(f"parties={self.parties}: must be in [{MIN_PARTIES}, {MAX_PARTIES}]")
        if not 1 <= self.months <= MAX_MONTHS:
            raise ValueError(f"months={self.months}: must be in [1, {MAX_MONTHS}]")
        if self.parties * (self.months + HORIZON_MONTHS) > MAX_PARTY_MONTHS:
            raise ValueError(
                f"parties={self.parties}, months={self.months}: (months + {HORIZON_MONTHS}) x parties must be "
                f"at most {MAX_PARTY_MONTHS:,} (memory of the ground truth); simulate fewer parties or months"
            )
        if self.start.day != 1:
            raise ValueError(f"start={self.start}: must be the first day of a month")
        if period_end(self.start, self.months) > LATEST_PERIOD_END:
            raise ValueError(
                f"start={self.start}, months={self.months}: the period ends "
                f"{period_end(self.start, self.months)}, after {LATEST_PERIOD_END} (must be in the past)"
            )
        if not 0 < self.business_share < 0.5:
            raise ValueError(f"business_share={self.business_share}: must be in (0, 0.5)")
        if abs(sum(self.household_sector_shares) - 1) > 1e-9:
            raise ValueError("household_sector_shares must sum to 1")
        if not 1 <= self.pd_paths <= 256:
            raise ValueError(f"pd_paths={self.pd_paths}: must be in [1, 256]")
        if not 1 <= self.loan_pd_paths <= 1024:
            raise ValueError(f"loan_pd_paths={self.loan_pd_paths}: must be in [1, 1024]")
        for name in ("life_shock_prob", "walk_away_prob"):
            if not 0 <= getattr(self, name) <= 0.5:
                raise ValueError(f"{name}={getattr(self, name)}: must be in [0, 0.5] (a monthly probability)")
        for name in ("life_shock_months",):
            if not 0 < getattr(self, name) <= 60:
                raise ValueError(f"{name}={getattr(self, name)}: must be in (0, 60]")
        if not 1_000 <= self.chunk_parties <= 1_000_000:
            raise ValueError(f"chunk_parties={self.chunk_parties}: must be in [1000, 1000000]")

    def as_dict(self) -> dict:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        return out


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def period_end(start: dt.date, months: int) -> dt.date:
    return add_months(start, months)


def month_starts_us(start: dt.date, months: int) -> np.ndarray:
    """Microseconds since the epoch of month starts 0..months (months + 1 values, UTC)."""
    epoch = dt.date(1970, 1, 1)
    days = [(add_months(start, m) - epoch).days for m in range(months + 1)]
    return np.asarray(days, dtype=np.int64) * US_PER_DAY


def month_of_year(start: dt.date, months: int) -> np.ndarray:
    """0 = January for each simulated month index."""
    return (np.arange(months) + start.month - 1) % 12


SECTOR_INDEX = {name: i for i, name in enumerate(contract.SECTORS)}
CATEGORY_INDEX = {name: i for i, name in enumerate(contract.CATEGORIES)}
