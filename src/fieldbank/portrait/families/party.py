"""Party: what the party table says (kind, sector, region, age, tenure, declared figures).

This family is also the portrait's row set: one row per party created before D.
Declared income and assets are self-reported and unverified ("traditional" data).
"""

from __future__ import annotations

import ibis.expr.types as ir

from fieldbank.portrait.catalog import Feature
from fieldbank.portrait.engine import whole_days_between
from fieldbank.portrait.inputs import AsOf, Inputs

F = "party"
FEATURES = [
    Feature("party_kind", F, "household or business", None, "category", dtype="string"),
    Feature("party_sector", F, "livelihood (households) or line of trade (businesses)", None, "category",
            dtype="string"),
    Feature("party_region_id", F, "region the party lives or trades in", None, "category", dtype="string"),
    Feature("party_age_years", F, "year of D minus birth year of the household head or owner", None, "years",
            dtype="int64"),
    Feature("party_tenure_days", F, "days from the party's first appearance (created_at) to D", None, "days",
            dtype="int64"),
    Feature("party_declared_income_minor", F, "self-declared yearly income (unverified)", None,
            "minor units per year", dtype="int64"),
    Feature("party_declared_assets_minor", F, "self-declared assets (unverified)", None, "minor units",
            dtype="int64"),
]


def compute(inp: Inputs, a: AsOf) -> ir.Table:
    p = inp.parties.filter(inp.parties.created_at < a.ts)
    return p.select(
        party_id=p.party_id,
        party_kind=p.kind,
        party_sector=p.sector,
        party_region_id=p.region_id,
        party_age_years=(a.day.year - p.birth_year.cast("int64")),
        party_tenure_days=whole_days_between(a.ts, p.created_at),
        party_declared_income_minor=p.declared_income_minor.cast("int64"),
        party_declared_assets_minor=p.declared_assets_minor.cast("int64"),
    )
