"""Business activity: what a merchant sells, how steadily, to how many customers.

Revenue = purchases the party received (payments with kind "purchase" where it is the
payee); refunds = payments with kind "refund" the party paid out.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import count, money, ratio
from fieldbank.portrait.engine import safe_div
from fieldbank.portrait.families._common import MONTHS_N, outer_join_on_party, with_monthly_stats
from fieldbank.portrait.inputs import AsOf, Inputs
from fieldbank.portrait.windows import PaymentAggregates, Window, full_aggregates, monthly

F = "business"
WINDOWS_DAYS = (30, 90, 365)
FEATURES = (
    [money(f"biz_revenue_minor_{w}d", F, f"purchases received in the last {w} days", w) for w in WINDOWS_DAYS]
    + [count(f"biz_sales_n_{w}d", F, f"number of purchases received in the last {w} days", w)
       for w in WINDOWS_DAYS]
    + [count(f"biz_active_days_{w}d", F, f"days with at least one sale in the last {w} days", w, "days")
       for w in WINDOWS_DAYS]
    + [
        ratio("biz_revenue_growth_90d", F,
              "revenue of the last 90 days / revenue of the 90 days before - 1 (null if no earlier revenue)", 180),
        ratio("biz_revenue_cv_360d", F,
              "volatility: coefficient of variation of the 12 monthly (30-day) revenues, empty months as 0", 360),
        ratio("biz_peak_month_share_360d", F,
              "seasonality strength: share of the last 12 months' revenue earned in the best 30-day month "
              "(1/12 = flat, 1 = all in one month)", 360),
        count("biz_customers_n_90d", F, "distinct paying customers in the last 90 days", 90),
        count("biz_customers_n_365d", F, "distinct paying customers in the last 365 days", 365),
        ratio("biz_repeat_customer_share_365d", F,
              "share of the last 365 days' customers who bought on at least 2 different days", 365),
        ratio("biz_top_customer_share_365d", F, "share of the last 365 days' revenue from the largest customer",
              365),
        ratio("biz_ticket_mean_minor_90d", F, "mean purchase amount received in the last 90 days", 90,
              "minor units"),
        ratio("biz_refund_share_90d", F, "refunds paid out / revenue, last 90 days", 90),
    ]
)


WINDOWS = (
    *(Window(f"biz_revenue_minor_{w}d", "sales_minor", w) for w in WINDOWS_DAYS),
    *(Window(f"biz_sales_n_{w}d", "sales_n", w) for w in WINDOWS_DAYS),
    *(Window(f"biz_active_days_{w}d", "sales_days", w) for w in WINDOWS_DAYS),
    Window("biz_rev_prev90", "sales_minor", 180, 90),
    *monthly("biz_rev", "sales_minor"),
    Window("biz_refunds_90d", "refunds_out_minor", 90),
)


def compute(inp: Inputs, a: AsOf, agg: PaymentAggregates | None = None) -> ir.Table:
    """The family from shared payment aggregates (`agg`, holding at least WINDOWS), or from the
    rollups when `agg` is None."""
    return finish(agg if agg is not None else full_aggregates(inp, a, WINDOWS), a)


def finish(agg: PaymentAggregates, a: AsOf) -> ir.Table:
    """The features from window sums (zero-filled) and the pair state; both paths call this."""
    s = agg.windows.select("party_id", *(w.name for w in WINDOWS))
    s = s.filter(s.biz_sales_n_365d > 0)  # merchants: other parties get nulls / zeros downstream anyway
    s = with_monthly_stats(s, "biz_rev")
    s = s.select(
        "party_id",
        *(f"biz_{m}_{w}d" for m in ("revenue_minor", "sales_n", "active_days") for w in WINDOWS_DAYS),
        biz_revenue_growth_90d=safe_div(s.biz_revenue_minor_90d, s.biz_rev_prev90) - 1.0,
        biz_revenue_cv_360d=s.biz_rev_cv,
        biz_peak_month_share_360d=safe_div(ibis.greatest(*(s[f"biz_rev_f{k}"] for k in range(MONTHS_N))),
                                           s.biz_rev_sum),
        biz_ticket_mean_minor_90d=safe_div(s.biz_revenue_minor_90d, s.biz_sales_n_90d),
        biz_refund_share_90d=safe_div(s.biz_refunds_90d, s.biz_revenue_minor_90d),
    )
    # Customers need the counterparty: the pair state (purchases only).
    c = agg.payee_table(a)
    c = c.select(
        "party_id",
        biz_customers_n_90d=c.cust_n_90d,
        biz_customers_n_365d=c.cust_n_365d,
        biz_repeat_customer_share_365d=safe_div(c.cust_repeat_n_365d, c.cust_n_365d),
        biz_top_customer_share_365d=safe_div(c.cust_top_minor_365d, c.cust_total_minor_365d),
    )
    return outer_join_on_party(s, c)
