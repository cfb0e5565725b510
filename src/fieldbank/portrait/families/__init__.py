"""Feature families: each module has FEATURES (catalog entries) and compute(inputs, as_of),
except thin_file, which derives its flags from the other families' columns."""

from fieldbank.portrait.families import bills, business, credit, household, party, region, supply_chain, thin_file

# Output order of the portrait's columns.
ALL_FAMILIES = (party, business, household, supply_chain, bills, credit, region, thin_file)
COMPUTED_FAMILIES = (business, household, supply_chain, bills, credit, region)
# Families whose compute(inputs, as_of, aggregates) reads payments only through windows.py.
PAYMENT_FAMILIES = (business, household, region)

__all__ = ["ALL_FAMILIES", "COMPUTED_FAMILIES", "PAYMENT_FAMILIES"]
