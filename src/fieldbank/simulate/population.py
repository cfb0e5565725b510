"""The static population: regions, parties, latent traits and the networks between them.

Households are party indices 0..n_households-1, businesses n_households..parties-1;
business-level arrays are indexed by `b = party - n_households`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fieldbank.simulate.households import essential_needs
from fieldbank.simulate.params import (
    BUSINESS_SHARES,
    CATEGORY_SHOP,
    COGS_RATIO,
    CROPS,
    DISCRETIONARY_SHARES,
    ESSENTIAL_SHARES,
    FARM_INPUT_SHARE,
    HOUSEHOLD_CATEGORIES,
    LABOUR_SHARE,
    PAYMENT_TERMS_DAYS,
    SECTOR_INDEX,
    SHOP_SECTORS,
    SUBSISTENCE_MINOR,
    SUBSISTENCE_SPLIT,
    SUPPLIER_SECTORS,
    SimParams,
)

FARMING, WAGE, MIXED = 0, 1, 2  # household livelihoods (= contract sector indices 0..2)
BUSINESS_SECTOR_LIST = tuple(BUSINESS_SHARES)


class WeightedPicker:
    """Pick items at random, weighted, within a group (e.g. businesses of one region and sector).

    Groups with no item fall back to the item's `fallback` group (e.g. the whole sector).
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int) -> None:
        assert group.shape == weight.shape and np.all(weight > 0)
        self.order = np.argsort(group, kind="stable")
        sorted_groups = group[self.order]
        self.cum = np.cumsum(weight[self.order].astype(np.float64))
        self.lo = np.searchsorted(sorted_groups, np.arange(n_groups), side="left")
        self.hi = np.searchsorted(sorted_groups, np.arange(n_groups), side="right")

    def has(self, groups: np.ndarray) -> np.ndarray:
        return self.hi[groups] > self.lo[groups]

    def pick(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lo, hi = self.lo[groups], self.hi[groups]
        assert np.all(hi > lo), "picking from an empty group"
        base = np.where(lo > 0, self.cum[np.maximum(lo - 1, 0)], 0.0)
        target = base + rng.random(len(groups)) * (self.cum[hi - 1] - base)
        pos = np.clip(np.searchsorted(self.cum, target, side="right"), lo, hi - 1)
        return self.order[pos]


def pick_in_region_or_sector(
    regional: WeightedPicker, by_sector: WeightedPicker, region: np.ndarray, sector_slot: np.ndarray,
    n_slots: int, rng: np.random.Generator,
) -> np.ndarray:
    """Pick a business of the sector slot in the region; fall back to the whole sector."""
    key = region.astype(np.int64) * n_slots + sector_slot
    out = np.empty(len(region), dtype=np.int64)
    ok = regional.has(key)
    out[ok] = regional.pick(key[ok], rng)
    if (~ok).any():
        out[~ok] = by_sector.pick(sector_slot[~ok], rng)
    return out


@dataclass
class Population:
    n_parties: int
    n_households: int
    n_businesses: int
    n_regions: int
    party_ids: pa.Array  # string, by party index
    region: np.ndarray  # int32 per party
    sector: np.ndarray  # int8 contract sector index per party
    birth_year: np.ndarray  # int32 per party (head of household or owner)
    # latent traits, per party
    discipline: np.ndarray
    volatility: np.ndarray
    management_quality: np.ndarray
    assets_minor: np.ndarray  # true assets
    fraud_ring: np.ndarray  # int32, -1 if not in a ring
    # regions
    climate_risk: np.ndarray  # per region
    region_crop_weights: np.ndarray  # regions x crops
    # households (index h)
    livelihood: np.ndarray  # FARMING / WAGE / MIXED
    base_income_minor: np.ndarray  # expected monthly income
    wage_minor: np.ndarray  # monthly wage when employed (0 for farmers)
    farm_annual_minor: np.ndarray  # expected yearly harvest sales
    crop: np.ndarray
    employer: np.ndarray  # business index b or -1
    harvest_buyer: np.ndarray  # business index b or -1
    shops: np.ndarray  # households x len(SHOP_SECTORS), business index b
    ess_need_minor: np.ndarray  # households x categories, base monthly essential need
    disc_want_minor: np.ndarray  # households x categories, base monthly discretionary wish
    bill_minor: np.ndarray  # households x 3 (electricity, water, telecom); 0 = no such bill
    # businesses (index b)
    b_sector: np.ndarray  # index into BUSINESS_SECTOR_LIST
    is_factory: np.ndarray  # large employers selling outside the economy
    attractiveness: np.ndarray
    cogs_ratio: np.ndarray
    expected_revenue_minor: np.ndarray
    overhead_minor: np.ndarray
    b_bill_minor: np.ndarray  # businesses x 3
    payday: np.ndarray  # day of month (0-based) payroll is paid
    supplier_ptr: np.ndarray  # CSR over businesses: suppliers of b are supplier_idx[ptr[b]:ptr[b+1]]
    supplier_idx: np.ndarray
    payment_terms_days: np.ndarray  # per business as a supplier
    shop_picker_regional: WeightedPicker
    shop_picker_sector: WeightedPicker
    declared_income_minor: np.ndarray  # yearly, per party (declared)
    declared_assets_minor: np.ndarray  # -1 = not declared
    expected_income_minor: np.ndarray  # true expected monthly income per party (standard loan size)
    cash0_minor: np.ndarray  # cash at the start of the period
    need_by_month_minor: np.ndarray  # households x 12: essential needs by month of year (float32)
    declared_income_shown: np.ndarray  # False = declared income missing in the parties table
    birth_year_shown: np.ndarray


def make_party_ids(n: int, rng: np.random.Generator) -> pa.Array:
    """Opaque ids: 'P' + a zero-padded permuted number, so id order says nothing about kind."""
    width = len(str(n - 1))
    numbers = pa.array(rng.permutation(n).astype(np.int64))
    padded = pc.utf8_lpad(pc.cast(numbers, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise("P", padded, "")


def hex_hashes(values: np.ndarray) -> np.ndarray:
    """Hash-like 16-hex-digit strings of uint64 values (stand-ins for hashed phones/devices)."""
    return np.char.mod("%016x", values.astype(np.uint64))


def build_population(p: SimParams, rng: np.random.Generator) -> Population:
    n = p.parties
    n_b = max(len(BUSINESS_SHARES), int(round(n * p.business_share)))
    n_h = n - n_b
    assert n_h > 0
    n_regions = int(np.clip(round(n / p.parties_per_region), 1, p.max_regions))
    if n >= 1000:
        n_regions = max(n_regions, 4)

    # --- regions: climate risk and crop mix (2-3 crops each)
    climate_risk = np.exp(rng.normal(0.0, 0.35, n_regions))
    crop_w = np.zeros((n_regions, len(CROPS)))
    for r in range(n_regions):  # tiny loop over regions only
        chosen = rng.choice(len(CROPS), size=rng.integers(2, 4), replace=False)
        crop_w[r, chosen] = rng.dirichlet(np.ones(len(chosen)) * 2)

    region = rng.integers(0, n_regions, n).astype(np.int32)
    # --- traits. Age moves discipline and assets a little: traditional data carries signal.
    birth_year = rng.integers(1956, 2004, n).astype(np.int32)
    age = 2023 - birth_year
    z_disc = rng.normal(0, 1, n) + 0.08 * (age - 45)
    discipline = 1 / (1 + np.exp(-1.1 * z_disc))
    # the young hold less steady jobs and trades
    volatility = np.clip(np.exp(rng.normal(np.log(0.15) - 0.02 * (age - 45), 0.5, n)), 0.03, 0.6)
    management_quality = rng.beta(2.5, 2.5, n)

    # --- households
    livelihood = rng.choice(3, size=n_h, p=np.asarray(p.household_sector_shares)).astype(np.int8)
    # conscientious households also earn a bit more (as in real data): income carries signal
    base_income = np.exp(rng.normal(np.log(p.median_income_minor), p.income_sigma, n_h)
                         + 0.8 * (discipline[:n_h] - 0.5))
    base_income *= np.where(livelihood == FARMING, 0.85, np.where(livelihood == WAGE, 1.08, 0.95))
    base_income = np.maximum(base_income, 100_000).astype(np.int64)
    # poorer households live on more casual, less steady income
    volatility[:n_h] *= (p.median_income_minor / base_income) ** 0.5
    # farmers' income is lumpier: more volatile on average
    volatility[:n_h] *= np.where(livelihood == FARMING, 1.3, np.where(livelihood == MIXED, 1.15, 0.9))
    volatility = np.clip(volatility, 0.03, 0.6)
    # farmers also do casual work (a fifth of their income), mixed households half wage, half farm
    wage = np.where(livelihood == WAGE, base_income,
                    np.where(livelihood == MIXED, base_income // 2, base_income // 5))
    farm_annual = np.where(livelihood == FARMING, base_income * 12,
                           np.where(livelihood == MIXED, (base_income - wage) * 12, 0)).astype(np.int64)
    cum_crops = np.cumsum(crop_w, axis=1)
    crop = (rng.random(n_h)[:, None] > cum_crops[region[:n_h]]).sum(axis=1).clip(0, len(CROPS) - 1).astype(np.int8)

    # --- businesses
    b_sector = np.concatenate([
        np.arange(len(BUSINESS_SECTOR_LIST)),
        rng.choice(len(BUSINESS_SECTOR_LIST), size=n_b - len(BUSINESS_SECTOR_LIST),
                   p=np.asarray(list(BUSINESS_SHARES.values()))),
    ]).astype(np.int8)
    b_region = region[n_h:]
    b_mq = management_quality[n_h:]
    attractiveness = np.exp(rng.normal(0, 0.8, n_b)) * (0.4 + b_mq)
    workshop = BUSINESS_SECTOR_LIST.index("workshop")
    # factories: the largest workshops of each region employ most wage earners
    is_factory = np.zeros(n_b, dtype=bool)
    factory_candidates = np.flatnonzero(b_sector == workshop)
    # keep at least one ordinary workshop for households to buy services from
    n_factories = min(len(factory_candidates) - 1, max(1, int(n_h * 0.0025)))
    if n_factories > 0:
        is_factory[rng.choice(factory_candidates, size=n_factories, replace=False)] = True
    sector = np.empty(n, dtype=np.int8)
    sector[:n_h] = livelihood  # contract sector indices 0..2 are farming, wage, mixed
    sector[n_h:] = np.asarray([SECTOR_INDEX[s] for s in BUSINESS_SECTOR_LIST], dtype=np.int8)[b_sector]

    # --- households' shops: one main shop per shop sector, weighted by attractiveness
    n_slots = len(BUSINESS_SECTOR_LIST)
    shop_ok = ~is_factory
    shop_b = np.flatnonzero(shop_ok)
    regional = WeightedPicker(b_region[shop_b].astype(np.int64) * n_slots + b_sector[shop_b],
                              attractiveness[shop_b], n_regions * n_slots)
    by_sector = WeightedPicker(b_sector[shop_b].astype(np.int64), attractiveness[shop_b], n_slots)
    # map picker positions back to business indices
    regional.order = shop_b[regional.order]
    by_sector.order = shop_b[by_sector.order]
    shops = np.empty((n_h, len(SHOP_SECTORS)), dtype=np.int32)
    for j, s in enumerate(SHOP_SECTORS):
        slot = np.full(n_h, BUSINESS_SECTOR_LIST.index(s), dtype=np.int64)
        shops[:, j] = pick_in_region_or_sector(regional, by_sector, region[:n_h], slot, n_slots, rng)

    # --- household needs per category (monthly, at base income)
    n_cat = len(HOUSEHOLD_CATEGORIES)
    ess = np.zeros((n_h, n_cat), dtype=np.int64)
    disc = np.zeros((n_h, n_cat), dtype=np.int64)
    taste = np.exp(rng.normal(0, 0.25, (n_h, n_cat)))
    for j, c in enumerate(HOUSEHOLD_CATEGORIES):
        if c in ESSENTIAL_SHARES:
            ess[:, j] = ((SUBSISTENCE_MINOR * SUBSISTENCE_SPLIT.get(c, 0.0) + base_income * ESSENTIAL_SHARES[c])
                         * taste[:, j]).astype(np.int64)
        if c in DISCRETIONARY_SHARES:
            # disciplined households want less: discipline is partly thrift
            disc[:, j] = (base_income * DISCRETIONARY_SHARES[c] * taste[:, j]
                          * (1.25 - 0.5 * discipline[:n_h])).astype(np.int64)
    ess[:, HOUSEHOLD_CATEGORIES.index("agri_inputs")] = (farm_annual / 12 * FARM_INPUT_SHARE).astype(np.int64)
    bills = np.zeros((n_h, 3), dtype=np.int64)
    bills[:, 0] = base_income * 0.030 * taste[:, 0]
    bills[:, 1] = np.where(rng.random(n_h) < 0.7, base_income * 0.010, 0)
    bills[:, 2] = base_income * 0.020 * taste[:, 1]
    bills = np.maximum(bills, np.where(bills > 0, 500, 0))

    # --- expected revenue of each business from its customers (main-shop spending)
    exp_rev = np.zeros(n_b)
    shop_of_cat = np.asarray([SHOP_SECTORS.index(CATEGORY_SHOP[c]) for c in HOUSEHOLD_CATEGORIES])
    spend = (ess + disc).astype(np.float64)
    for j in range(n_cat):
        exp_rev += np.bincount(shops[:, shop_of_cat[j]], weights=spend[:, j], minlength=n_b)

    # --- employers: wage earners work for local businesses (by labour demand) or factories
    earners = np.flatnonzero(wage > 0)
    labour_demand = np.array([LABOUR_SHARE[BUSINESS_SECTOR_LIST[s]] for s in b_sector]) * exp_rev
    employer = np.full(n_h, -1, dtype=np.int64)
    local_ok = (labour_demand > 0) & ~is_factory
    supply_by_region = np.bincount(region[earners], weights=wage[earners], minlength=n_regions)
    demand_by_region = np.bincount(b_region[local_ok], weights=labour_demand[local_ok], minlength=n_regions)
    p_local = np.clip(demand_by_region / np.maximum(supply_by_region, 1), 0.0, 0.5)
    goes_local = rng.random(len(earners)) < p_local[region[earners]]
    loc_b = np.flatnonzero(local_ok)
    loc_picker = WeightedPicker(b_region[loc_b].astype(np.int64), labour_demand[loc_b], n_regions)
    loc_picker.order = loc_b[loc_picker.order]
    fac_b = np.flatnonzero(is_factory)
    if len(fac_b) == 0:  # tiny economies: every wage earner works for a local business
        goes_local[:] = True
        fac_b = loc_b
    fac_picker = WeightedPicker(b_region[fac_b].astype(np.int64), attractiveness[fac_b], n_regions)
    fac_picker.order = fac_b[fac_picker.order]
    fac_all = WeightedPicker(np.zeros(len(fac_b), dtype=np.int64), attractiveness[fac_b], 1)
    fac_all.order = fac_b[fac_all.order]
    er = region[earners].astype(np.int64)
    use_local = goes_local & loc_picker.has(er)
    employer[earners[use_local]] = loc_picker.pick(er[use_local], rng)
    rest = ~use_local
    in_region = rest & fac_picker.has(er)
    employer[earners[in_region]] = fac_picker.pick(er[in_region], rng)
    anywhere = rest & ~in_region
    employer[earners[anywhere]] = fac_all.pick(np.zeros(int(anywhere.sum()), dtype=np.int64), rng)

    # --- harvest buyers: a farm co-op of the region, else a wholesaler, else any co-op
    growers = np.flatnonzero(farm_annual > 0)
    harvest_buyer = np.full(n_h, -1, dtype=np.int64)
    coop = BUSINESS_SECTOR_LIST.index("farm_coop")
    wholesaler = BUSINESS_SECTOR_LIST.index("wholesaler")
    buyer_ok = (b_sector == coop) | (b_sector == wholesaler)
    bb = np.flatnonzero(buyer_ok)
    key = b_region[bb].astype(np.int64) * 2 + (b_sector[bb] == wholesaler)
    buyer_picker = WeightedPicker(key, attractiveness[bb], n_regions * 2)
    buyer_picker.order = bb[buyer_picker.order]
    coop_all = WeightedPicker(np.zeros(int((b_sector == coop).sum()), dtype=np.int64),
                              attractiveness[b_sector == coop], 1)
    coop_all.order = np.flatnonzero(b_sector == coop)[coop_all.order]
    gr = region[growers].astype(np.int64)
    first = buyer_picker.has(gr * 2)
    harvest_buyer[growers[first]] = buyer_picker.pick(gr[first] * 2, rng)
    second = ~first & buyer_picker.has(gr * 2 + 1)
    harvest_buyer[growers[second]] = buyer_picker.pick(gr[second] * 2 + 1, rng)
    third = ~first & ~second
    harvest_buyer[growers[third]] = coop_all.pick(np.zeros(int(third.sum()), dtype=np.int64), rng)

    # --- supply network: scale-free by the fitness model (Pareto fitness ~ preferential attachment)
    is_supplier = np.isin(b_sector, [BUSINESS_SECTOR_LIST.index(s) for s in SUPPLIER_SECTORS]) & ~is_factory
    sup = np.flatnonzero(is_supplier)
    fitness = rng.pareto(1.2, len(sup)) + 1.0
    sup_regional = WeightedPicker(b_region[sup].astype(np.int64), fitness, n_regions)
    sup_regional.order = sup[sup_regional.order]
    sup_all = WeightedPicker(np.zeros(len(sup), dtype=np.int64), fitness, 1)
    sup_all.order = sup[sup_all.order]
    buys_local = ~np.isin(b_sector, [BUSINESS_SECTOR_LIST.index(s) for s in ("wholesaler", "farm_coop", "agri_inputs")])
    n_sup = np.where(buys_local, rng.integers(1, 4, n_b), 0)
    supplier_ptr = np.concatenate([[0], np.cumsum(n_sup)]).astype(np.int64)
    buyer_of_link = np.repeat(np.arange(n_b), n_sup)
    link_region = b_region[buyer_of_link].astype(np.int64)
    local_link = (rng.random(len(buyer_of_link)) < 0.7) & sup_regional.has(link_region)
    supplier_idx = np.empty(len(buyer_of_link), dtype=np.int64)
    supplier_idx[local_link] = sup_regional.pick(link_region[local_link], rng)
    supplier_idx[~local_link] = sup_all.pick(np.zeros(int((~local_link).sum()), dtype=np.int64), rng)
    assert np.all(supplier_idx != buyer_of_link)  # buyers are never suppliers themselves

    # --- businesses' revenue: shop revenue, plus expected B2B sales for suppliers
    cogs = np.array([COGS_RATIO[BUSINESS_SECTOR_LIST[s]] for s in b_sector]) * (1.10 - 0.2 * b_mq)
    link_amount = cogs[buyer_of_link] * exp_rev[buyer_of_link] / np.maximum(n_sup[buyer_of_link], 1)
    exp_rev += np.bincount(supplier_idx, weights=link_amount, minlength=n_b)
    fac_payroll = np.bincount(employer[employer >= 0], weights=wage[employer >= 0], minlength=n_b)
    exp_rev = np.where(is_factory, fac_payroll / 0.35, exp_rev)
    # co-ops: crop purchases resold outside at a margin
    coop_buy = np.bincount(harvest_buyer[growers], weights=farm_annual[growers] / 12.0, minlength=n_b)
    exp_rev += coop_buy * 1.12
    # every business sells something; tiny shops nobody chose still have walk-in trade
    exp_rev = np.maximum(exp_rev, 200_000.0)
    # overheads scale with the business's own trade; a co-op's crop throughput costs little
    overhead = ((exp_rev - coop_buy * 1.12) * 0.10 + coop_buy * 0.03) * (1.2 - 0.4 * b_mq)
    overhead = np.maximum(overhead, 10_000).astype(np.int64)
    b_bills = np.zeros((n_b, 3), dtype=np.int64)
    b_bills[:, 0] = np.maximum(exp_rev * 0.012, 500)
    b_bills[:, 1] = np.maximum(exp_rev * 0.003, 500)
    b_bills[:, 2] = np.maximum(exp_rev * 0.004, 500)

    # --- starting cash: months of income rising with discipline; farmers also carry last harvest
    months_buffer = (np.exp(rng.normal(np.log(0.8 + 4.0 * discipline[:n_h]) + 0.02 * (age[:n_h] - 45), 0.6))
                     + 3.0 * (farm_annual > 0))
    cash0 = np.empty(n, dtype=np.int64)
    cash0[:n_h] = (base_income * months_buffer).astype(np.int64)
    b_fixed = overhead + exp_rev * 0.15
    cash0[n_h:] = (b_fixed * (0.5 + 2.0 * b_mq) * np.exp(rng.normal(0, 0.5, n_b))).astype(np.int64)

    # --- assets, declared income and assets (traditional data: noisy, self-reported).
    # Assets = liquid savings + illiquid (house, land, equipment), so they carry a little of
    # the cash buffer that decides defaults; what parties declare is noisy and a bit inflated.
    # a business's income is its margin: 12 % of its own trade, 10 % of a co-op's crop throughput
    b_income = 0.12 * (exp_rev - coop_buy * 1.12) + 0.10 * coop_buy
    expected_income = np.concatenate([base_income, np.maximum(b_income, 10_000).astype(np.int64)])
    illiquid = expected_income * np.exp(rng.normal(np.log(3.0) + 0.01 * (age - 45), 0.5, n))
    assets = (cash0 + illiquid).astype(np.int64)
    overstatement = rng.normal(0.05, 0.20, n)
    declared_income = (expected_income * 12 * np.exp(overstatement) / 100_000).round().astype(np.int64) * 100_000
    declared_assets = (assets * np.exp(rng.normal(0.15, 0.35, n)) / 100_000).round().astype(np.int64) * 100_000
    declared_assets = np.where(rng.random(n) < 0.12, -1, declared_assets)

    need_by_month = np.column_stack([essential_needs(ess, crop, m).sum(axis=1) for m in range(12)]).astype(np.float32)

    # --- fraud rings: a few households share one device and take loans they never repay
    fraud_ring = np.full(n, -1, dtype=np.int32)
    ring_size = 4
    n_ring_members = int(n * p.fraud_ring_share) // ring_size * ring_size
    if p.fraud_ring_share > 0 and n >= 1000:
        n_ring_members = max(n_ring_members, ring_size)  # at least one ring to find
    if n_ring_members >= ring_size:
        members = rng.choice(n_h, size=n_ring_members, replace=False)
        fraud_ring[members] = (np.arange(n_ring_members) // ring_size).astype(np.int32)
        # fraudsters inflate what they declare
        declared_income[members] = declared_income[members] * 2
        declared_assets[members] = np.maximum(declared_assets[members], 0) * 3

    return Population(
        n_parties=n, n_households=n_h, n_businesses=n_b, n_regions=n_regions,
        party_ids=make_party_ids(n, rng), region=region, sector=sector, birth_year=birth_year,
        discipline=discipline, volatility=volatility, management_quality=management_quality,
        assets_minor=assets, fraud_ring=fraud_ring, climate_risk=climate_risk,
        region_crop_weights=crop_w, livelihood=livelihood, base_income_minor=base_income,
        wage_minor=wage.astype(np.int64), farm_annual_minor=farm_annual, crop=crop,
        employer=employer, harvest_buyer=harvest_buyer, shops=shops, ess_need_minor=ess,
        disc_want_minor=disc, bill_minor=bills, b_sector=b_sector, is_factory=is_factory,
        attractiveness=attractiveness, cogs_ratio=cogs, expected_revenue_minor=exp_rev.astype(np.int64),
        overhead_minor=overhead, b_bill_minor=b_bills,
        payday=rng.integers(0, 10, n_b).astype(np.int64),
        supplier_ptr=supplier_ptr, supplier_idx=supplier_idx,
        payment_terms_days=rng.choice(np.asarray(PAYMENT_TERMS_DAYS), size=n_b, p=[0.2, 0.5, 0.2, 0.1]),
        shop_picker_regional=regional, shop_picker_sector=by_sector,
        declared_income_minor=declared_income, declared_assets_minor=declared_assets,
        expected_income_minor=expected_income,
        cash0_minor=cash0, need_by_month_minor=need_by_month, declared_income_shown=rng.random(n) >= 0.05, birth_year_shown=rng.random(n) >= 0.03,
    )
