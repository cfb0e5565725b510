"""Business activity: what a merchant sells, how steadily, to how many customers.

Revenue = purchases the party received (payments with kind "purchase" where it is the
payee); refunds = payments with kind "refund" the party paid out.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import count, money, ratio
from fieldbank.portrait.engine import safe_div
from fieldbank.portrait.families._common import (
    MONTHS_N,
    bucket_sum,
    drop_month_columns,
    in_window,
    month_columns,
    month_sums,
    monthly_cv,
    window_buckets,
    with_month_bucket,
)
from fieldbank.portrait.inputs import AsOf, Inputs

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


def compute(inp: Inputs, a: AsOf) -> ir.Table:
    r = inp.party_day
    r = r.filter(r.day < a.date, r.day >= a.start_date(365))
    sales = r.filter(r.direction == "in", r.kind == "purchase")
    sales = with_month_bucket(sales, a)
    # Stage 1: party x 30-day bucket (days never straddle buckets, so distinct days add up).
    b = sales.group_by("party_id", "bucket").aggregate(
        revenue=sales.amount_minor.sum(), sales_n=sales.n_payments.sum(), days_n=sales.day.nunique()
    )
    # Stage 2: windows are bucket ranges.
    s = b.group_by("party_id").aggregate(
        **{f"biz_revenue_minor_{w}d": bucket_sum(b, b.revenue, 0, window_buckets(w)) for w in WINDOWS_DAYS},
        **{f"biz_sales_n_{w}d": bucket_sum(b, b.sales_n, 0, window_buckets(w)) for w in WINDOWS_DAYS},
        **{f"biz_active_days_{w}d": bucket_sum(b, b.days_n, 0, window_buckets(w)) for w in WINDOWS_DAYS},
        rev_prev90=bucket_sum(b, b.revenue, 3, 5),
        **month_sums(b, b.revenue, "rev"),
    )
    months = month_columns(s, "rev")
    s = s.mutate(
        biz_revenue_growth_90d=safe_div(s.biz_revenue_minor_90d.fill_null(0), s.rev_prev90) - 1.0,
        biz_revenue_cv_360d=monthly_cv(s, "rev"),
        biz_peak_month_share_360d=safe_div(ibis.greatest(*months), sum(months[1:], months[0])),
        biz_ticket_mean_minor_90d=safe_div(s.biz_revenue_minor_90d, s.biz_sales_n_90d),
    )
    assert len(months) == MONTHS_N
    s = drop_month_columns(s, "rev").drop("rev_prev90")

    refunds = r.filter(r.direction == "out", r.kind == "refund", in_window(r.day, a, 90))
    refunds = refunds.group_by("party_id").aggregate(refunds_90d=refunds.amount_minor.sum())
    s = s.left_join(refunds, "party_id").drop("party_id_right")
    s = s.mutate(biz_refund_share_90d=safe_div(s.refunds_90d.fill_null(0), s.biz_revenue_minor_90d)).drop(
        "refunds_90d"
    )

    # Customers need the counterparty: the pair rollup (purchases only).
    pairs = inp.pair_day
    pairs = pairs.filter(pairs.day < a.date, pairs.day >= a.start_date(365))
    per_customer = pairs.group_by(party_id=pairs.payee_id, customer_id=pairs.payer_id).aggregate(
        days_n=pairs.count(),  # pair_day has one row per payee x payer x day: rows are days
        amount_minor=pairs.amount_minor.sum(),
        last_day=pairs.day.max(),
    )
    c = per_customer.group_by("party_id").aggregate(
        biz_customers_n_90d=(per_customer.last_day >= a.start_date(90)).sum().cast("int64"),
        biz_customers_n_365d=per_customer.count().cast("int64"),
        repeat_n=(per_customer.days_n >= 2).sum(),
        top_minor=per_customer.amount_minor.max(),
        total_minor=per_customer.amount_minor.sum(),
    )
    c = c.mutate(
        biz_repeat_customer_share_365d=safe_div(c.repeat_n, c.biz_customers_n_365d),
        biz_top_customer_share_365d=safe_div(c.top_minor, c.total_minor),
    ).drop("repeat_n", "top_minor", "total_minor")
    return s.outer_join(c, "party_id").mutate(party_id=ibis.coalesce(ibis._.party_id, ibis._.party_id_right)).drop(
        "party_id_right"
    )
