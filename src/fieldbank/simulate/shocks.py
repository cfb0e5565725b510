"""Correlated shocks: drought and flood hit a region, a price crash hits a crop everywhere.

One function draws them for the simulation (one path) and for the Monte Carlo of the true
PD (many paths), so both use the same shock process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fieldbank.simulate.params import CROPS, HARVEST_MONTHS, SimParams

# Drought risk is highest in the dry, hot months; floods in the monsoon months.
DROUGHT_SEASON = np.array([0.5, 0.5, 0.8, 1.0, 1.3, 1.6, 1.8, 1.6, 1.0, 0.7, 0.5, 0.5])
FLOOD_SEASON = np.array([0.2, 0.2, 0.4, 0.8, 1.3, 2.0, 2.2, 2.0, 1.0, 0.5, 0.2, 0.2])
# Share of a crop's yearly sales falling in each month of the year.
HARVEST_SHARE = np.zeros((len(CROPS), 12))
for _c, _crop in enumerate(CROPS):
    HARVEST_SHARE[_c, list(HARVEST_MONTHS[_crop])] = 1.0 / len(HARVEST_MONTHS[_crop])


@dataclass
class Shocks:
    """One month's shocks; leading axis = paths (1 for the simulation itself)."""

    drought: np.ndarray  # paths x regions, bool
    flood: np.ndarray  # paths x regions, bool
    price_crash: np.ndarray  # paths x crops, bool
    crop_multiplier: np.ndarray  # paths x regions x crops: harvest value vs normal
    factory_demand: np.ndarray  # paths x regions: factories' export orders vs normal


def draw_shocks(p: SimParams, climate_risk: np.ndarray, month_of_year: int, paths: int,
                rng: np.random.Generator) -> Shocks:
    n_regions = len(climate_risk)
    drought = rng.random((paths, n_regions)) < p.drought_prob * climate_risk * DROUGHT_SEASON[month_of_year]
    flood = rng.random((paths, n_regions)) < p.flood_prob * climate_risk * FLOOD_SEASON[month_of_year]
    crash = rng.random((paths, len(CROPS))) < p.price_crash_prob
    yield_mult = np.exp(rng.normal(0.0, 0.08, (paths, n_regions, 1)))
    yield_mult = yield_mult * np.where(drought, rng.uniform(0.3, 0.7, (paths, n_regions)), 1.0)[:, :, None]
    yield_mult = yield_mult * np.where(flood, rng.uniform(0.4, 0.8, (paths, n_regions)), 1.0)[:, :, None]
    price = np.exp(rng.normal(0.0, 0.06, (paths, 1, len(CROPS))))
    price = price * np.where(crash, rng.uniform(0.5, 0.8, (paths, len(CROPS))), 1.0)[:, None, :]
    slump = rng.random((paths, n_regions)) < 0.015
    demand = np.exp(rng.normal(0.0, 0.05, (paths, n_regions))) * np.where(slump, 0.6, 1.0)
    demand = demand * np.where(flood, 0.85, 1.0)
    return Shocks(drought, flood, crash, yield_mult * price, demand)
