"""Limit and price: pure functions, with hypothesis for the invariants."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fieldbank.decision.pricing import LimitParams, PricingParams, credit_limit_minor, price


def test_apr_is_cost_of_funds_plus_expected_loss_plus_opex_plus_margin() -> None:
    p = price(0.03, 0.5, margin_bps=500, params=PricingParams(cost_of_funds_bps=300, operating_cost_bps=200))
    assert p.expected_loss_bps == 150
    assert p.apr_bps == 300 + 150 + 200 + 500 == 1150
    assert p.daily_rate_ppm == 1150 * 100 // 365 == 315
    assert not p.capped and p.covers_cost and p.margin_bps == 500


def test_legal_cap() -> None:
    p = price(0.5, 0.8, margin_bps=900, params=PricingParams(max_apr_bps=3_600))
    assert p.apr_bps == 3_600 and p.capped
    assert p.uncapped_apr_bps == 300 + 4000 + 200 + 900
    assert not p.covers_cost and p.margin_bps < 0


@pytest.mark.parametrize("pd_, lgd", [(-0.1, 0.5), (1.1, 0.5), (float("nan"), 0.5), (0.1, 2.0)])
def test_price_rejects_bad_inputs(pd_, lgd) -> None:
    with pytest.raises(ValueError):
        price(pd_, lgd, margin_bps=100)


@given(st.floats(0, 1), st.floats(0, 1), st.integers(0, 3000), st.integers(100, 20_000))
def test_price_invariants(pd_, lgd, margin, cap) -> None:
    p = price(pd_, lgd, margin_bps=margin, params=PricingParams(max_apr_bps=cap))
    assert 0 <= p.apr_bps <= cap
    assert p.daily_rate_ppm * 365 <= p.apr_bps * 100
    assert p.capped == (p.uncapped_apr_bps > cap)
    assert p.covers_cost == (p.margin_bps >= 0)


def _limit(**over):
    args = dict(kind="business", monthly_revenue_minor=2_000_000, monthly_income_minor=300_000,
                existing_exposure_minor=0, requested_amount_minor=10_000_000, pd_12m=0.0,
                limit_income_months=2.0, max_limit_minor=20_000_000)
    return credit_limit_minor(**{**args, **over})


def test_limit_from_revenue_or_income() -> None:
    assert _limit() == 4_000_000
    assert _limit(kind="household") == 600_000
    assert _limit(monthly_revenue_minor=0) == 600_000  # business without sales: income
    assert _limit(existing_exposure_minor=1_000_000) == 3_000_000
    assert _limit(requested_amount_minor=1_234_567) == 1_234_000  # rounded down, never above the ask
    assert _limit(max_limit_minor=2_500_000) == 2_500_000
    assert _limit(pd_12m=0.15) == 2_000_000  # half-way to the PD ceiling: half the limit
    assert _limit(limit_factor=0.5) == 2_000_000
    assert _limit(existing_exposure_minor=50_000_000) == 0
    assert _limit(pd_12m=0.3) == 0


def test_limit_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="kind"):
        _limit(kind="bank")
    with pytest.raises(ValueError, match="monthly_revenue_minor"):
        _limit(monthly_revenue_minor=-1)


@given(st.sampled_from(["household", "business"]), st.integers(0, 10**9), st.integers(0, 10**9),
       st.integers(0, 10**9), st.integers(1, 10**9), st.floats(0, 1), st.floats(0, 24), st.integers(0, 10**9),
       st.floats(0, 1))
def test_limit_invariants(kind, rev, inc, exposure, ask, pd_, months, cap, factor) -> None:
    params = LimitParams()
    limit = credit_limit_minor(kind=kind, monthly_revenue_minor=rev, monthly_income_minor=inc,
                               existing_exposure_minor=exposure, requested_amount_minor=ask, pd_12m=pd_,
                               limit_income_months=months, max_limit_minor=cap, limit_factor=factor, params=params)
    assert limit == 0 or (params.min_limit_minor <= limit <= min(ask, cap) and limit % params.rounding_minor == 0)
    assert limit + exposure <= max(cap, exposure) or limit == 0
