"""Turning a month's per-household spending into individual purchase payments.

A household's spending in a category is split into a Poisson number of payments with
Dirichlet(1) shares; the split is exact in integer minor units and every payment is at
least 1. Payees are the household's main shop for the category, or another shop of the
same sector and region. Everything is vectorised over a chunk of households.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fieldbank import contract
from fieldbank.simulate.params import (
    CATEGORY_INDEX,
    CATEGORY_SHOP,
    HOUSEHOLD_CATEGORIES,
    PAYMENTS_PER_MONTH,
    SHOP_SECTORS,
    US_PER_DAY,
    US_PER_SECOND,
)
from fieldbank.simulate.population import BUSINESS_SECTOR_LIST, Population, pick_in_region_or_sector

CHANNEL = {name: i for i, name in enumerate(contract.PAYMENT_CHANNELS)}
KIND = {name: i for i, name in enumerate(contract.PAYMENT_KINDS)}
SHOP_SLOT_OF_CATEGORY = np.asarray([SHOP_SECTORS.index(CATEGORY_SHOP[c]) for c in HOUSEHOLD_CATEGORIES])
SECTOR_OF_CATEGORY = np.asarray([BUSINESS_SECTOR_LIST.index(CATEGORY_SHOP[c]) for c in HOUSEHOLD_CATEGORIES])
CONTRACT_CATEGORY = np.asarray([CATEGORY_INDEX[c] for c in HOUSEHOLD_CATEGORIES], dtype=np.int8)
LAMBDA = np.asarray([PAYMENTS_PER_MONTH[c] for c in HOUSEHOLD_CATEGORIES])
ONLINE_CATEGORIES = np.isin(np.asarray(HOUSEHOLD_CATEGORIES), ["clothing", "durables"])
REFUNDABLE = np.isin(np.asarray(HOUSEHOLD_CATEGORIES), ["clothing", "durables", "leisure", "services"])


@dataclass
class PaymentRows:
    """Payments as parallel numpy arrays (party indices; the writer turns them into strings)."""

    ts_us: np.ndarray
    payer: np.ndarray
    payee: np.ndarray
    amount_minor: np.ndarray
    channel: np.ndarray  # int8 index into contract.PAYMENT_CHANNELS
    kind: np.ndarray  # int8 index into contract.PAYMENT_KINDS
    category: np.ndarray  # int8 index into contract.CATEGORIES, -1 = null

    def __len__(self) -> int:
        return len(self.amount_minor)

    @staticmethod
    def concat(parts: list["PaymentRows"]) -> "PaymentRows":
        return PaymentRows(*(np.concatenate([getattr(p, f) for p in parts]) for f in (
            "ts_us", "payer", "payee", "amount_minor", "channel", "kind", "category")))


def simple_rows(ts_us, payer, payee, amount, channel: str, kind: str, category: np.ndarray | int) -> PaymentRows:
    n = len(amount)
    assert np.all(amount >= 1)
    return PaymentRows(
        ts_us=np.asarray(ts_us, np.int64), payer=np.asarray(payer, np.int64), payee=np.asarray(payee, np.int64),
        amount_minor=np.asarray(amount, np.int64), channel=np.full(n, CHANNEL[channel], np.int8),
        kind=np.full(n, KIND[kind], np.int8),
        category=np.broadcast_to(np.asarray(category, np.int8), (n,)).copy(),
    )


def split_exact(total: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split each total into counts[i] positive integer parts summing exactly to total[i]."""
    assert np.all(counts >= 1) and np.all(total >= counts)
    n = int(counts.sum())
    group_end = np.cumsum(counts)
    group_start = group_end - counts
    w = rng.exponential(1.0, n)
    cw = np.cumsum(w)
    before = np.where(group_start > 0, cw[np.maximum(group_start - 1, 0)], 0.0)
    gtotal = cw[group_end - 1] - before
    grp = np.repeat(np.arange(len(total)), counts)
    frac = (cw - before[grp]) / gtotal[grp]
    extra = (total - counts)[grp]
    cut = np.floor(frac * extra).astype(np.int64)
    cut[group_end - 1] = (total - counts)  # exact at the end of each group despite rounding
    prev = np.empty(n, np.int64)
    prev[0] = 0
    prev[1:] = cut[:-1]
    prev[group_start] = 0
    parts = 1 + cut - prev
    assert np.all(parts >= 1)
    return parts


def household_purchases(pop: Population, shops: np.ndarray, h0: int, spend: np.ndarray, base_spend: np.ndarray,
                        loyalty: float, refund_prob: float, month_start_us: int, month_len_us: int,
                        rng: np.random.Generator) -> tuple[PaymentRows, PaymentRows]:
    """Purchases (and their refunds) of households h0..h0+len(spend)-1 for one month."""
    n_h, n_cat = spend.shape
    ratio = np.sqrt(spend / np.maximum(base_spend, 1))
    counts = rng.poisson(LAMBDA[None, :] * np.minimum(ratio, 3.0))
    counts = np.where(spend > 0, np.clip(counts, 1, None), 0)
    counts = np.minimum(counts, spend)  # every payment is at least 1 minor unit
    hh_local, cat = np.nonzero(counts)
    c = counts[hh_local, cat]
    amounts = split_exact(spend[hh_local, cat], c, rng)
    hh_local = np.repeat(hh_local, c)
    cat = np.repeat(cat, c)
    n = len(amounts)
    payee_b = shops[h0 + hh_local, SHOP_SLOT_OF_CATEGORY[cat]].astype(np.int64)
    elsewhere = rng.random(n) >= loyalty
    if elsewhere.any():
        payee_b[elsewhere] = pick_in_region_or_sector(
            pop.shop_picker_regional, pop.shop_picker_sector, pop.region[h0 + hh_local[elsewhere]],
            SECTOR_OF_CATEGORY[cat[elsewhere]], len(BUSINESS_SECTOR_LIST), rng)
    ts = month_start_us + rng.integers(0, month_len_us, n)
    channel = np.where(ONLINE_CATEGORIES[cat] | (rng.random(n) < 0.1), CHANNEL["online"], CHANNEL["qr"]).astype(np.int8)
    payer = (h0 + hh_local).astype(np.int64)
    payee = payee_b + pop.n_households
    rows = PaymentRows(ts, payer, payee, amounts, channel, np.full(n, KIND["purchase"], np.int8),
                       CONTRACT_CATEGORY[cat])
    refunded = REFUNDABLE[cat] & (rng.random(n) < refund_prob)
    r_ts = np.minimum(ts[refunded] + rng.integers(3600, 5 * 86_400, int(refunded.sum())) * US_PER_SECOND,
                      month_start_us + month_len_us - 1)
    refunds = PaymentRows(r_ts, payee[refunded], payer[refunded], amounts[refunded], channel[refunded],
                          np.full(int(refunded.sum()), KIND["refund"], np.int8), CONTRACT_CATEGORY[cat[refunded]])
    return rows, refunds


def random_ts(month_start_us: int, month_len_us: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return month_start_us + rng.integers(0, month_len_us, n)


def payday_ts(month_start_us: int, payday: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return month_start_us + payday * US_PER_DAY + rng.integers(8 * 3600, 18 * 3600, len(payday)) * US_PER_SECOND
