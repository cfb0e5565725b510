"""Thin-file flags: which families have data for the party, so models and policies can treat
new-to-credit and data-poor borrowers differently. Derived from the other families' columns."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from fieldbank.portrait.catalog import count, flag

F = "thin_file"
FEATURES = [
    flag("thin_has_business_activity", F, "1 if the party received any purchase in the last 365 days", 365),
    flag("thin_has_household_flows", F, "1 if the party paid purchases or received income in the last 365 days",
         365),
    flag("thin_has_supply_chain", F, "1 if the party had a supplier or buyer invoice in the last 365 days", 365),
    flag("thin_has_bills", F, "1 if the party had a bill due in the last 365 days", 365),
    flag("thin_has_credit_file", F, "1 if the party had a loan opened before D", None),
    flag("thin_new_to_credit", F, "1 if the party never had a loan before D", None),
    count("thin_families_with_data_n", F, "how many of the 5 data families above have data (0-5)", 365,
          "families"),
]


def derive(cols: dict[str, ir.Value]) -> dict[str, ir.IntegerValue]:
    """The flags, from the other families' (already zero-filled) column expressions."""

    def as_flag(cond: ir.BooleanValue) -> ir.IntegerValue:
        return ibis.ifelse(cond, 1, 0).cast("int64")

    flags = {
        "thin_has_business_activity": as_flag(cols["biz_sales_n_365d"] > 0),
        "thin_has_household_flows": as_flag((cols["hh_spend_minor_365d"] > 0) | (cols["hh_income_minor_365d"] > 0)),
        "thin_has_supply_chain": as_flag((cols["sc_suppliers_n_365d"] + cols["sc_buyers_n_365d"]) > 0),
        "thin_has_bills": as_flag(cols["bills_n_365d"] > 0),
        "thin_has_credit_file": as_flag(cols["credit_loans_n"] > 0),
        "thin_new_to_credit": as_flag(cols["credit_loans_n"] == 0),
    }
    has = [v for n, v in flags.items() if n.startswith("thin_has_")]
    flags["thin_families_with_data_n"] = sum(has[1:], has[0]).cast("int64")
    return flags
