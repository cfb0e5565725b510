"""Thin-file flags: which families have data for the party, so models and policies can treat
new-to-credit and data-poor borrowers differently. Derived from the other families' columns."""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import numpy as np
import pyarrow as pa

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


# Each "has" flag: 1 if any of these (zero-filled, non-negative) columns is > 0.
HAS_RULES: dict[str, tuple[str, ...]] = {
    "thin_has_business_activity": ("biz_sales_n_365d",),
    "thin_has_household_flows": ("hh_spend_minor_365d", "hh_income_minor_365d"),
    "thin_has_supply_chain": ("sc_suppliers_n_365d", "sc_buyers_n_365d"),
    "thin_has_bills": ("bills_n_365d",),
    "thin_has_credit_file": ("credit_loans_n",),
}


def derive(cols: dict[str, ir.Value]) -> dict[str, ir.IntegerValue]:
    """The flags, from the other families' (already zero-filled) column expressions."""

    def as_flag(cond: ir.BooleanValue) -> ir.IntegerValue:
        return ibis.ifelse(cond, 1, 0).cast("int64")

    flags = {}
    for name, sources in HAS_RULES.items():
        cond = cols[sources[0]] > 0
        for s in sources[1:]:
            cond = cond | (cols[s] > 0)
        flags[name] = as_flag(cond)
    flags["thin_new_to_credit"] = as_flag(cols["credit_loans_n"] == 0)
    has = [flags[n] for n in HAS_RULES]
    flags["thin_families_with_data_n"] = sum(has[1:], has[0]).cast("int64")
    return {f.name: flags[f.name] for f in FEATURES}


def derive_arrow(cols: dict[str, pa.Array]) -> dict[str, pa.Array]:
    """`derive` on Arrow arrays (the DuckDB path assembles the portrait in Arrow): same rules."""
    flags = {}
    for name, sources in HAS_RULES.items():
        cond = np.zeros(len(cols[sources[0]]), dtype=bool)
        for s in sources:
            cond |= np.asarray(cols[s].to_numpy(zero_copy_only=False)) > 0
        flags[name] = cond.astype(np.int64)
    flags["thin_new_to_credit"] = (np.asarray(cols["credit_loans_n"].to_numpy(zero_copy_only=False)) == 0).astype(
        np.int64)
    flags["thin_families_with_data_n"] = sum(flags[n] for n in HAS_RULES)
    return {f.name: pa.array(flags[f.name], pa.int64()) for f in FEATURES}
