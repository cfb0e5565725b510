"""Household consumption and income: spending level, trend, essentials, stability; income
cadence (wages, harvest sales); net inflow as a savings proxy; spending cuts after shocks.

Spend = purchases the party paid; income = wage and harvest_sale payments it received;
net inflow = everything received minus everything paid (all kinds).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.contract import ESSENTIAL_CATEGORIES
from fieldbank.portrait.catalog import Feature, count, flag, money, ratio
from fieldbank.portrait.engine import safe_div
from fieldbank.portrait.families._common import (
    months_with_value,
    outer_join_on_party,
    with_monthly_stats,
)
from fieldbank.portrait.inputs import AsOf, Inputs
from fieldbank.portrait.windows import PaymentAggregates, Window, full_aggregates, monthly

F = "household"
WINDOWS_DAYS = (30, 90, 365)
# Income in the last 90 days below this share of the 90 days before counts as a shock.
INCOME_DROP_RATIO = 0.7
FEATURES = (
    [money(f"hh_spend_minor_{w}d", F, f"purchases paid in the last {w} days", w) for w in WINDOWS_DAYS]
    + [
        Feature("hh_spend_month_mean_minor_360d", F, "monthly spend level: mean of the 12 monthly (30-day) spends",
                360, "minor units per month", dtype="float64", fill_zero=True),
        ratio("hh_spend_growth_90d", F,
              "spend trend: spend of the last 90 days / spend of the 90 days before - 1", 180),
        ratio("hh_essentials_share_90d", F,
              "share of the last 90 days' spend on essentials (" + ", ".join(sorted(ESSENTIAL_CATEGORIES)) + ")",
              90),
        ratio("hh_spend_cv_360d", F, "spend stability: coefficient of variation of the 12 monthly spends", 360),
        count("hh_merchants_n_90d", F, "distinct merchants paid in the last 90 days", 90),
        money("hh_income_minor_90d", F, "wages and harvest sales received in the last 90 days", 90),
        money("hh_income_minor_365d", F, "wages and harvest sales received in the last 365 days", 365),
        count("hh_income_months_n_360d", F,
              "income regularity: months (of the last 12 x 30 days) with any wage or harvest income", 360,
              "months"),
        ratio("hh_income_cv_360d", F, "income volatility: coefficient of variation of the 12 monthly incomes",
              360),
        money("hh_net_inflow_minor_90d", F,
              "savings proxy: everything received minus everything paid, last 90 days (may be negative)", 90),
        money("hh_net_inflow_minor_365d", F,
              "savings proxy: everything received minus everything paid, last 365 days (may be negative)", 365),
        flag("hh_income_drop_flag_90d", F,
             f"income shock: income of the last 90 days < {INCOME_DROP_RATIO:.0%} of the 90 days before", 180),
        ratio("hh_spend_change_after_income_drop_90d", F,
              "spend cut after a shock: spend growth over the last 90 days, only when the income shock flag is 1",
              180),
    ]
)


WINDOWS = (
    *(Window(f"hh_spend_minor_{w}d", "spend_minor", w) for w in WINDOWS_DAYS),
    Window("hh_spend_prev90", "spend_minor", 180, 90),
    Window("hh_essentials_90d", "essentials_minor", 90),
    Window("hh_income_minor_90d", "income_minor", 90),
    Window("hh_income_minor_365d", "income_minor", 365),
    Window("hh_income_prev90", "income_minor", 180, 90),
    Window("hh_net_inflow_minor_90d", "net_minor", 90),
    Window("hh_net_inflow_minor_365d", "net_minor", 365),
    *monthly("hh_spend", "spend_minor"),
    *monthly("hh_inc", "income_minor"),
)


def compute(inp: Inputs, a: AsOf, agg: PaymentAggregates | None = None) -> ir.Table:
    """The family from shared payment aggregates (`agg`, holding at least WINDOWS), or from the
    rollups when `agg` is None."""
    return finish(agg if agg is not None else full_aggregates(inp, a, WINDOWS), a)


def finish(agg: PaymentAggregates, a: AsOf) -> ir.Table:
    """The features from window sums (zero-filled) and the pair state; both paths call this."""
    h = agg.windows.select("party_id", *(w.name for w in WINDOWS))
    h = with_monthly_stats(with_monthly_stats(h, "hh_spend"), "hh_inc")
    spend_growth = safe_div(h.hh_spend_minor_90d, h.hh_spend_prev90) - 1.0
    income_drop = (h.hh_income_prev90 > 0) & (
        h.hh_income_minor_90d.cast("float64") < INCOME_DROP_RATIO * h.hh_income_prev90.cast("float64")
    )
    h = h.select(
        "party_id",
        *(f"hh_spend_minor_{w}d" for w in WINDOWS_DAYS),
        hh_spend_month_mean_minor_360d=h.hh_spend_mean,
        hh_spend_growth_90d=spend_growth,
        hh_essentials_share_90d=safe_div(h.hh_essentials_90d, h.hh_spend_minor_90d),
        hh_spend_cv_360d=h.hh_spend_cv,
        hh_income_minor_90d=h.hh_income_minor_90d,
        hh_income_minor_365d=h.hh_income_minor_365d,
        hh_income_months_n_360d=months_with_value(h, "hh_inc"),
        hh_income_cv_360d=h.hh_inc_cv,
        hh_net_inflow_minor_90d=h.hh_net_inflow_minor_90d,
        hh_net_inflow_minor_365d=h.hh_net_inflow_minor_365d,
        hh_income_drop_flag_90d=ibis.ifelse(income_drop, 1, 0).cast("int64"),
        hh_spend_change_after_income_drop_90d=ibis.ifelse(income_drop, spend_growth, ibis.null("float64")),
    )
    m = agg.payer_table(a).rename(hh_merchants_n_90d="merchants_n_90d")
    return outer_join_on_party(h, m)
