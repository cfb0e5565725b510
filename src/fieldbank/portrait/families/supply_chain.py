"""Supply chain: suppliers and buyers (count, tenure, concentration), invoice punctuality as
buyer and as supplier, counterparties' own distress, and network position.

Point in time: only invoices issued before D; an invoice paid at or after D is unpaid as of
D (see `days_late_as_of`). "As supplier" punctuality is how late the party's buyers pay it.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import count, money, ratio
from fieldbank.portrait.engine import whole_days_between
from fieldbank.portrait.families._common import days_late_as_of, unpaid_as_of
from fieldbank.portrait.graph import pagerank
from fieldbank.portrait.inputs import AsOf, Inputs

F = "supply_chain"
DISTRESS_DAYS_LATE = 30  # a counterparty more than this late on an invoice (as of D) is in distress
ROLES = {"buyer": "supplier", "supplier": "buyer"}  # party's role -> its counterparties' role

FEATURES = [
    count("sc_suppliers_n_365d", F, "distinct suppliers that invoiced the party in the last 365 days", 365),
    count("sc_buyers_n_365d", F, "distinct buyers the party invoiced in the last 365 days", 365),
    ratio("sc_supplier_tenure_days_mean_365d", F,
          "mean days since the first invoice with each of the last 365 days' suppliers", 365, "days"),
    ratio("sc_buyer_tenure_days_mean_365d", F,
          "mean days since the first invoice with each of the last 365 days' buyers", 365, "days"),
    ratio("sc_supplier_hhi_365d", F,
          "supplier concentration: Herfindahl index of invoiced amounts across suppliers, last 365 days", 365),
    ratio("sc_buyer_hhi_365d", F,
          "buyer concentration: Herfindahl index of invoiced amounts across buyers, last 365 days", 365),
    ratio("sc_buyer_days_late_mean_365d", F,
          "as buyer: mean days late (as known at D) on invoices due in the last 365 days", 365, "days"),
    ratio("sc_buyer_days_late_p90_365d", F,
          "as buyer: 90th percentile of days late on invoices due in the last 365 days", 365, "days"),
    ratio("sc_buyer_late_share_365d", F,
          "as buyer: share of invoices due in the last 365 days paid 1+ days late or still unpaid", 365),
    ratio("sc_supplier_days_late_mean_365d", F,
          "as supplier: mean days late of its buyers on invoices due in the last 365 days", 365, "days"),
    ratio("sc_supplier_days_late_p90_365d", F,
          "as supplier: 90th percentile of its buyers' days late, invoices due in the last 365 days", 365,
          "days"),
    ratio("sc_supplier_late_share_365d", F,
          "as supplier: share of its invoices due in the last 365 days paid late or still unpaid", 365),
    money("sc_overdue_unpaid_minor", F, "as buyer: amount of invoices past due and unpaid as of D", None),
    ratio("sc_counterparty_distress_share_365d", F,
          f"share of the last 365 days' suppliers and buyers in distress as of D (an invoice more than "
          f"{DISTRESS_DAYS_LATE} days late as buyer, or a loan default before D)", 365),
    money("sc_weighted_degree_minor_365d", F, "invoiced amount in and out, last 365 days", 365),
    ratio("sc_pagerank_365d", F,
          "network position: PageRank of the invoice graph (money flows buyer -> supplier) of the last 365 "
          "days, scaled so the mean node is 1", 365, "x mean"),
]


def _sides(inp: Inputs, a: AsOf) -> ir.Table:
    """Each invoice issued before D twice: once from the buyer's side, once from the supplier's."""
    inv = inp.invoices.filter(inp.invoices.issued_at < a.ts)
    inv = inv.mutate(days_late=days_late_as_of(inv.due_at, inv.paid_at, a), unpaid=unpaid_as_of(inv.paid_at, a))
    sides = []
    for role, cp_role in ROLES.items():
        sides.append(
            inv.select(
                party_id=inv[f"{role}_id"],
                cp_id=inv[f"{cp_role}_id"],
                role=ibis.literal(role),
                issued_at=inv.issued_at,
                due_at=inv.due_at,
                amount_minor=inv.amount_minor,
                days_late=inv.days_late,
                unpaid=inv.unpaid,
            )
        )
    return sides[0].union(sides[1])


def graph_edges(inp: Inputs, a: AsOf) -> ir.Table:
    """The window's invoice graph (src = buyer, dst = supplier, weight = amount) for PageRank."""
    inv = inp.invoices
    g = inv.filter(inv.issued_at < a.ts, inv.issued_at >= a.start_ts(365))
    return g.select(src=g.buyer_id, dst=g.supplier_id, weight=g.amount_minor)


def compute(inp: Inputs, a: AsOf, ranks: ir.Table | None = None) -> ir.Table:
    """The family; `ranks` (node_id, rank, nodes_n) is the PageRank of `graph_edges`, computed
    here from scratch unless given (the incremental path warm-starts it)."""
    e = _sides(inp, a)
    in_365 = e.issued_at >= a.start_ts(365)

    # Counterparties: tenure over all history, activity and amounts over the window.
    pc = e.group_by("party_id", "role", "cp_id").aggregate(
        first_issued_at=e.issued_at.min(),
        amount_365d=e.amount_minor.sum(where=in_365),
    )
    active = pc.filter(pc.amount_365d.notnull())
    totals = active.group_by("party_id", "role").aggregate(role_total=active.amount_365d.sum())
    act = active.join(totals, ["party_id", "role"])
    act = act.mutate(
        tenure_days=whole_days_between(a.ts, act.first_issued_at),
        share_sq=(act.amount_365d.cast("float64") / act.role_total.cast("float64")) ** 2,
    )
    is_b = act.role == "buyer"
    is_s = act.role == "supplier"
    cps = act.group_by("party_id").aggregate(
        sc_suppliers_n_365d=act.count(where=is_b).cast("int64"),
        sc_buyers_n_365d=act.count(where=is_s).cast("int64"),
        sc_supplier_tenure_days_mean_365d=act.tenure_days.mean(where=is_b),
        sc_buyer_tenure_days_mean_365d=act.tenure_days.mean(where=is_s),
        sc_supplier_hhi_365d=act.share_sq.sum(where=is_b),
        sc_buyer_hhi_365d=act.share_sq.sum(where=is_s),
    )

    # Punctuality on invoices due in the window, and what is overdue now.
    due_365 = (e.due_at < a.ts) & (e.due_at >= a.start_ts(365))
    late_f = e.days_late.cast("float64")
    late_flag = ibis.ifelse(e.days_late >= 1, 1, 0).cast("float64")
    pun = e.group_by("party_id").aggregate(
        **{
            f"sc_{role}_days_late_mean_365d": late_f.mean(where=due_365 & (e.role == role)) for role in ROLES
        },
        **{
            f"sc_{role}_days_late_p90_365d": late_f.quantile(0.9, where=due_365 & (e.role == role))
            for role in ROLES
        },
        **{f"sc_{role}_late_share_365d": late_flag.mean(where=due_365 & (e.role == role)) for role in ROLES},
        sc_overdue_unpaid_minor=e.amount_minor.sum(where=(e.role == "buyer") & (e.due_at < a.ts) & e.unpaid),
        sc_weighted_degree_minor_365d=e.amount_minor.sum(where=in_365),
    )

    # Counterparties' distress as of D.
    late_buyers = e.filter(e.role == "buyer", due_365, e.days_late > DISTRESS_DAYS_LATE).select("party_id")
    loans = inp.loans
    defaulted = loans.filter(loans.opened_at < a.ts, loans.defaulted_at < a.ts).select("party_id")
    distressed = late_buyers.union(defaulted).distinct().mutate(distressed=ibis.literal(1))
    pairs = active.select("party_id", "cp_id").distinct()
    pairs = pairs.left_join(distressed, pairs.cp_id == distressed.party_id).select(
        party_id=pairs.party_id, distressed=ibis._.distressed.fill_null(0)
    )
    dist = pairs.group_by("party_id").aggregate(
        sc_counterparty_distress_share_365d=pairs.distressed.cast("float64").mean()
    )

    # Network position: PageRank over the window's invoice graph.
    if ranks is None:
        ranks = pagerank(inp.con, graph_edges(inp, a))
    ranks = ranks.select(party_id=ranks.node_id, sc_pagerank_365d=ranks.rank * ranks.nodes_n)

    out = pun
    for t in (cps, dist, ranks):
        out = out.left_join(t, "party_id").drop("party_id_right")
    return out
