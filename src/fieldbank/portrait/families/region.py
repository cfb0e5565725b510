"""Region: the local economy around the party, as of D.

- income fell: among the region's parties with inflows (sales, wages, harvest sales
  received) in the 90 days before the last 90, the share whose last-90-day inflow fell by
  more than 20%;
- default rate: among the region's parties with a loan opened before D, the share with a
  default (90+ DPD) in the last 365 days before D.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import count, ratio
from fieldbank.portrait.inputs import AsOf, Inputs
from fieldbank.portrait.windows import PaymentAggregates, Window, full_aggregates

F = "region"
INCOME_FELL_RATIO = 0.8
FEATURES = [
    count("region_parties_n", F, "parties of the region created before D", None),
    ratio("region_income_fell_share_90d", F,
          "share of the region's earning parties whose inflows of the last 90 days fell by more than 20% "
          "against the 90 days before", 180),
    count("region_borrowers_n", F, "parties of the region with a loan opened before D", None),
    ratio("region_default_rate_365d", F,
          "share of the region's borrowers with a default (90+ DPD) in the last 365 days", 365),
]


WINDOWS = (
    Window("region_inflow_90d", "inflow_minor", 90),
    Window("region_inflow_prev90", "inflow_minor", 180, 90),
)


def compute(inp: Inputs, a: AsOf, agg: PaymentAggregates | None = None) -> ir.Table:
    """The family from shared payment aggregates (`agg`, holding at least WINDOWS), or from the
    rollups when `agg` is None; loans and parties are read as of D."""
    agg = agg if agg is not None else full_aggregates(inp, a, WINDOWS)
    parties = inp.parties.filter(inp.parties.created_at < a.ts).select("party_id", "region_id")

    w = agg.windows
    inflow = w.filter(w.region_inflow_prev90 > 0)
    fell = inflow.select(
        "party_id",
        fell=ibis.ifelse(
            inflow.region_inflow_90d.cast("float64") < INCOME_FELL_RATIO * inflow.region_inflow_prev90.cast("float64"),
            1, 0,
        ).cast("float64"),
    )
    fell = fell.join(parties, "party_id")
    fell_by_region = fell.group_by("region_id").aggregate(region_income_fell_share_90d=fell.fell.mean())

    ln = inp.loans.filter(inp.loans.opened_at < a.ts)
    defaulted_365 = (ln.defaulted_at < a.ts) & (ln.defaulted_at >= a.start_ts(365))
    borrowers = ln.group_by("party_id").aggregate(
        defaulted=ibis.ifelse(defaulted_365.fill_null(False), 1, 0).cast("float64").max()
    )
    borrowers = borrowers.join(parties, "party_id")
    default_by_region = borrowers.group_by("region_id").aggregate(
        region_borrowers_n=borrowers.count().cast("int64"),
        region_default_rate_365d=borrowers.defaulted.mean(),
    )
    size = parties.group_by("region_id").aggregate(region_parties_n=parties.count().cast("int64"))

    regions = size.left_join(fell_by_region, "region_id").drop("region_id_right")
    regions = regions.left_join(default_by_region, "region_id").drop("region_id_right")
    out = parties.join(regions, "region_id")
    return out.drop("region_id")
