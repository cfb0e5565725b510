"""Limit and price: small pure functions on integers and floats, no I/O.

Price: APR = cost of funds + expected loss (PD x LGD) + operating cost + margin, capped at a
legal maximum. It is quoted as an APR in basis points and a simple daily rate in parts per
million (APR / 365). When the cap bites, the price may no longer cover cost of funds +
expected loss + operating cost: `covers_cost` says so, and the decision declines rather than
lend at a loss it knows about.

Limit: months of observed revenue (businesses) or income (households) times a PD haircut,
times the policy's factor (e.g. a thin-file starter limit), capped by the grade's maximum,
minus what the party already owes us, never above the amount asked for, rounded down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAYS_PER_YEAR = 365
BPS = 10_000
PPM_PER_BPS = 100  # 1 bp = 0.0001 = 100 ppm


@dataclass(frozen=True)
class PricingParams:
    cost_of_funds_bps: int = 300
    operating_cost_bps: int = 200
    max_apr_bps: int = 3_600  # the legal maximum (e.g. 36%)
    min_apr_bps: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.cost_of_funds_bps <= BPS, self.cost_of_funds_bps
        assert 0 <= self.operating_cost_bps <= BPS, self.operating_cost_bps
        assert 0 <= self.min_apr_bps <= self.max_apr_bps <= 10 * BPS, (self.min_apr_bps, self.max_apr_bps)


@dataclass(frozen=True)
class Pricing:
    apr_bps: int  # quoted, after the cap
    daily_rate_ppm: int  # apr / 365, parts per million per day
    expected_loss_bps: int  # PD x LGD
    cost_of_funds_bps: int
    operating_cost_bps: int
    margin_bps: int  # the margin actually earned after the cap (may be < the target, even negative)
    uncapped_apr_bps: int
    capped: bool  # the legal maximum bit
    covers_cost: bool  # apr >= cost of funds + expected loss + operating cost

    def __post_init__(self) -> None:
        assert 0 <= self.apr_bps, self.apr_bps
        assert self.apr_bps <= self.uncapped_apr_bps or not self.capped


def price(pd_12m: float, lgd: float, *, margin_bps: int | float, params: PricingParams = PricingParams()) -> Pricing:
    """Risk-based price for a 12-month PD and a loss given default (both in [0, 1])."""
    if not (0.0 <= pd_12m <= 1.0) or math.isnan(pd_12m):
        raise ValueError(f"pd_12m={pd_12m!r}: must be a probability in [0, 1]")
    if not (0.0 <= lgd <= 1.0) or math.isnan(lgd):
        raise ValueError(f"lgd={lgd!r}: must be in [0, 1]")
    if margin_bps < 0:
        raise ValueError(f"margin_bps={margin_bps!r}: must be >= 0")
    expected_loss_bps = math.ceil(pd_12m * lgd * BPS)  # round against the bank: never underprice risk
    cost_bps = params.cost_of_funds_bps + expected_loss_bps + params.operating_cost_bps
    uncapped = max(params.min_apr_bps, cost_bps + int(round(margin_bps)))
    apr = min(uncapped, params.max_apr_bps)
    return Pricing(
        apr_bps=apr,
        daily_rate_ppm=daily_rate_ppm(apr),
        expected_loss_bps=expected_loss_bps,
        cost_of_funds_bps=params.cost_of_funds_bps,
        operating_cost_bps=params.operating_cost_bps,
        margin_bps=apr - cost_bps,
        uncapped_apr_bps=uncapped,
        capped=uncapped > params.max_apr_bps,
        covers_cost=apr >= cost_bps,
    )


def daily_rate_ppm(apr_bps: int) -> int:
    """Simple daily rate in parts per million: APR / 365, rounded down (never quote above the APR)."""
    assert apr_bps >= 0, apr_bps
    return apr_bps * PPM_PER_BPS // DAYS_PER_YEAR


@dataclass(frozen=True)
class LimitParams:
    pd_ceiling: float = 0.30  # the PD at which the haircut reaches zero
    min_limit_minor: int = 10_000  # below this an offer is not worth making
    rounding_minor: int = 1_000  # limits are quoted in round amounts
    absolute_max_limit_minor: int = 100_000_000  # whatever a policy says

    def __post_init__(self) -> None:
        assert 0.0 < self.pd_ceiling <= 1.0, self.pd_ceiling
        assert self.min_limit_minor >= 0 and self.rounding_minor >= 1, (self.min_limit_minor, self.rounding_minor)


def credit_limit_minor(*, kind: str, monthly_revenue_minor: int, monthly_income_minor: int,
                       existing_exposure_minor: int, requested_amount_minor: int, pd_12m: float,
                       limit_income_months: float, max_limit_minor: int | float, limit_factor: float = 1.0,
                       params: LimitParams = LimitParams()) -> int:
    """The credit limit in minor units (0 = no offer). Businesses lend on revenue, households on
    income; a business with no observed revenue falls back to income."""
    if kind not in ("household", "business"):
        raise ValueError(f"kind={kind!r}: must be household or business")
    for name, value in (("monthly_revenue_minor", monthly_revenue_minor), ("monthly_income_minor", monthly_income_minor),
                        ("existing_exposure_minor", existing_exposure_minor), ("requested_amount_minor", requested_amount_minor)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name}={value!r}: must be an integer >= 0")
    if not (0.0 <= pd_12m <= 1.0) or math.isnan(pd_12m):
        raise ValueError(f"pd_12m={pd_12m!r}: must be a probability in [0, 1]")
    if not (0.0 <= limit_factor <= 1.0) or limit_income_months < 0 or max_limit_minor < 0:
        raise ValueError(f"limit_factor={limit_factor!r} limit_income_months={limit_income_months!r} "
                         f"max_limit_minor={max_limit_minor!r}: out of range")
    base = monthly_revenue_minor if kind == "business" and monthly_revenue_minor > 0 else monthly_income_minor
    haircut = max(0.0, 1.0 - pd_12m / params.pd_ceiling)
    capacity = int(base * limit_income_months * haircut * limit_factor)
    cap = min(int(max_limit_minor), params.absolute_max_limit_minor)
    limit = min(capacity, cap) - existing_exposure_minor
    limit = min(limit, requested_amount_minor)
    limit -= limit % params.rounding_minor if limit > 0 else 0
    if limit < params.min_limit_minor:
        return 0
    assert 0 < limit <= requested_amount_minor and limit <= cap, (limit, requested_amount_minor, cap)
    return limit
