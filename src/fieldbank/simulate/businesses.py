"""Businesses: payroll at the start of the month, then sales, overheads, bills, loans, invoices.

Revenue is what customers paid them (households' purchases, other businesses' invoice
settlements) plus sales outside the simulated economy (factories' exports, co-ops' crops,
wholesalers' and online sellers' outside customers). Thin margins and fixed costs make
badly managed businesses fragile: they pay suppliers late, cut orders and lose customers.
"""

from __future__ import annotations

import numpy as np

from fieldbank.simulate.population import BUSINESS_SECTOR_LIST, Population

WHOLESALER = BUSINESS_SECTOR_LIST.index("wholesaler")
ONLINE = BUSINESS_SECTOR_LIST.index("online_seller")
COOP = BUSINESS_SECTOR_LIST.index("farm_coop")
AGRI = BUSINESS_SECTOR_LIST.index("agri_inputs")
FACTORY_LABOUR_SHARE = 0.35


def pay_payroll(pop: Population, employed: np.ndarray, cash_b: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each employer pays as many of its employees (in random order) as its cash covers.

    Returns (employee household indices paid, their wages, payroll due per business).
    """
    emp = np.flatnonzero(employed & (pop.employer >= 0))
    employer = pop.employer[emp]
    order = np.lexsort((rng.random(len(emp)), employer))
    emp, employer = emp[order], employer[order]
    wages = pop.wage_minor[emp]
    due = np.bincount(employer, weights=wages, minlength=pop.n_businesses)
    cum = np.cumsum(wages)
    first = np.r_[True, employer[1:] != employer[:-1]] if len(emp) else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(len(emp)), 0)) if len(emp) else emp
    within = cum - np.where(start > 0, cum[np.maximum(start - 1, 0)], 0)
    paid = within <= cash_b[employer]
    return emp[paid], wages[paid], np.rint(due).astype(np.int64)


def outside_sales(pop: Population, payroll_due: np.ndarray, factory_demand: np.ndarray,
                  volatility_b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sales to customers outside the simulated economy (not in the payments table)."""
    noise = np.exp(rng.normal(0.0, 1.0, pop.n_businesses) * volatility_b * 0.6)
    exp_rev = pop.expected_revenue_minor.astype(np.float64)
    b_region = pop.region[pop.n_households:]
    out = np.zeros(pop.n_businesses)
    out = np.where(pop.is_factory, payroll_due / FACTORY_LABOUR_SHARE * factory_demand[b_region] * noise, out)
    out = np.where(pop.b_sector == WHOLESALER, 0.25 * exp_rev * noise, out)
    out = np.where(pop.b_sector == ONLINE, 0.30 * exp_rev * noise, out)
    return out.astype(np.int64)


def stock_orders(pop: Population, revenue_ewma: np.ndarray, stressed: np.ndarray, volatility_b: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """This month's orders to local suppliers: (buyer b, supplier b, amount) per supply link."""
    n_sup = np.diff(pop.supplier_ptr)
    buyer = np.repeat(np.arange(pop.n_businesses), n_sup)
    waste = np.exp(rng.normal(0.0, 1.0, len(buyer)) * volatility_b[buyer] * 0.5)
    # a stressed business cannot restock fully: empty shelves lose customers
    amount = (pop.cogs_ratio[buyer] * revenue_ewma[buyer] / np.maximum(n_sup[buyer], 1) * waste
              * np.where(stressed[buyer], 0.6, 1.0))
    amount = np.maximum(amount, 1).astype(np.int64)
    return buyer, pop.supplier_idx, amount


def external_stock_share(pop: Population) -> np.ndarray:
    """Upstream businesses restock from outside: cost of goods as a share of their sales."""
    upstream = np.isin(pop.b_sector, [WHOLESALER, AGRI, COOP])
    return np.where(upstream, pop.cogs_ratio, 0.0)


def owner_draw_propensity(discipline_b: np.ndarray) -> np.ndarray:
    return 0.25 + 0.35 * (1 - discipline_b)
