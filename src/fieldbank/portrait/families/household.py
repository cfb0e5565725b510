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
    MONTHS_N,
    bucket_sum,
    drop_month_columns,
    month_sums,
    monthly_cv,
    months_with_value,
    window_buckets,
    with_month_bucket,
)
from fieldbank.portrait.inputs import AsOf, Inputs

F = "household"
WINDOWS_DAYS = (30, 90, 365)
INCOME_KINDS = ("wage", "harvest_sale")
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


def compute(inp: Inputs, a: AsOf) -> ir.Table:
    r = inp.party_day
    r = with_month_bucket(r.filter(r.day < a.date, r.day >= a.start_date(365)), a)
    is_spend = (r.direction == "out") & (r.kind == "purchase")
    is_income = (r.direction == "in") & r.kind.isin(INCOME_KINDS)
    is_essential = is_spend & r.category.isin(sorted(ESSENTIAL_CATEGORIES))
    signed = ibis.ifelse(r.direction == "in", r.amount_minor, -r.amount_minor)
    # Stage 1: party x 30-day bucket; stage 2: windows are bucket ranges.
    b = r.group_by("party_id", "bucket").aggregate(
        spend=r.amount_minor.sum(where=is_spend),
        essentials=r.amount_minor.sum(where=is_essential),
        income=r.amount_minor.sum(where=is_income),
        net=signed.sum(),
    )
    last90 = window_buckets(90)
    h = b.group_by("party_id").aggregate(
        **{f"hh_spend_minor_{w}d": bucket_sum(b, b.spend, 0, window_buckets(w)) for w in WINDOWS_DAYS},
        spend_prev90=bucket_sum(b, b.spend, last90 + 1, 5),
        essentials_90d=bucket_sum(b, b.essentials, 0, last90),
        hh_income_minor_90d=bucket_sum(b, b.income, 0, last90),
        hh_income_minor_365d=b.income.sum(),
        income_prev90=bucket_sum(b, b.income, last90 + 1, 5),
        hh_net_inflow_minor_90d=bucket_sum(b, b.net, 0, last90),
        hh_net_inflow_minor_365d=b.net.sum(),
        **month_sums(b, b.spend, "spend"),
        **month_sums(b, b.income, "inc"),
    )
    spend_360 = sum((h[f"spend_m{k}"].fill_null(0) for k in range(1, MONTHS_N)), h["spend_m0"].fill_null(0))
    spend_growth = safe_div(h.hh_spend_minor_90d.fill_null(0), h.spend_prev90) - 1.0
    income_drop = (h.income_prev90.fill_null(0) > 0) & (
        h.hh_income_minor_90d.fill_null(0).cast("float64") < INCOME_DROP_RATIO * h.income_prev90.cast("float64")
    )
    h = h.mutate(
        hh_spend_month_mean_minor_360d=spend_360.cast("float64") / MONTHS_N,
        hh_spend_growth_90d=spend_growth,
        hh_essentials_share_90d=safe_div(h.essentials_90d.fill_null(0), h.hh_spend_minor_90d),
        hh_spend_cv_360d=monthly_cv(h, "spend"),
        hh_income_months_n_360d=months_with_value(h, "inc"),
        hh_income_cv_360d=monthly_cv(h, "inc"),
        hh_income_drop_flag_90d=ibis.ifelse(income_drop, 1, 0).cast("int64"),
        hh_spend_change_after_income_drop_90d=ibis.ifelse(income_drop, spend_growth, ibis.null("float64")),
    )
    h = drop_month_columns(h, "spend", "inc").drop("spend_prev90", "essentials_90d", "income_prev90")

    pairs = inp.pair_day
    pairs = pairs.filter(pairs.day < a.date, pairs.day >= a.start_date(90))
    m = pairs.group_by(party_id=pairs.payer_id).aggregate(hh_merchants_n_90d=pairs.payee_id.nunique())
    return h.outer_join(m, "party_id").mutate(party_id=ibis.coalesce(ibis._.party_id, ibis._.party_id_right)).drop(
        "party_id_right"
    )
