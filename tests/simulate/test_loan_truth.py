"""The loan truth: the true PD of the label event itself (simulate/loan_truth.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow.compute as pc
import pytest

from fieldbank.labels import default_labels
from fieldbank.simulate import SimParams, credit, loan_truth
from fieldbank.simulate.params import US_PER_DAY, month_starts_us
from fieldbank.simulate.population import build_population


def _one_loan_each(pop, parties: np.ndarray, open_month: int, paid: int = 0) -> credit.LoanBook:
    book = credit.LoanBook(12)
    n = len(parties)
    principal = np.full(n, 1_000_000, np.int64)
    book.open(parties, open_month, np.full(n, 3 * US_PER_DAY + 1_000_000, np.int64), principal,
              credit.installment_minor(principal, 12, 0.015))
    book.paid_count[:] = paid
    return book


def _state(pop, cash_minor: int, walked: bool = False) -> loan_truth.LoanState:
    n = pop.n_parties
    return loan_truth.LoanState(
        cash=np.full(n, cash_minor, np.int64), employed=np.ones(pop.n_households, bool),
        stressed=np.zeros(pop.n_businesses, bool), revenue_ewma=pop.expected_revenue_minor.astype(np.float64),
        informal_debt=np.zeros(n, np.int64), walked_away=np.full(n, walked), pending_bills_minor=np.zeros(n, np.int64),
        shock_risk=np.ones(n), walk_away_risk=np.ones(n))


@pytest.fixture(scope="module")
def world():
    p = SimParams(parties=1000, months=24, seed=5, life_shock_prob=0.0, walk_away_prob=0.0, loan_pd_paths=256)
    pop = build_population(p, np.random.default_rng(1))
    # households without a fraud ring (fraudsters never pay: tested on their own below)
    parties = np.flatnonzero(pop.fraud_ring[: pop.n_households] < 0)[:50]
    return p, pop, parties, month_starts_us(p.start, p.months + 12)


def _pds(p, pop, book, t, ms, state) -> dict[int, np.ndarray]:
    probs = loan_truth.default_probabilities(p, pop, book, np.arange(len(book)), t, ms, state,
                                             np.random.default_rng(0))
    assert probs.shape == (len(loan_truth.HORIZONS_DAYS), p.loan_pd_paths, len(book))
    assert np.all((probs >= 0) & (probs <= 1 + 1e-6))
    return loan_truth.true_pd(probs)


def test_a_borrower_who_walked_away_defaults_90_days_after_the_next_due_date(world):
    p, pop, parties, ms = world
    t = 5
    book = _one_loan_each(pop, parties, open_month=t - 1)
    # first installment due in month t, 3 days in: default 90 days later, inside 180 days, not 90
    pds = _pds(p, pop, book, t, ms, _state(pop, 10**12, walked=True))
    assert np.all(pds[90] == 0) and np.all(pds[180] == 1) and np.all(pds[365] == 1)


def test_a_rich_borrower_with_no_hidden_risk_never_defaults(world):
    p, pop, parties, ms = world
    book = _one_loan_each(pop, parties, open_month=2, paid=3)
    pds = _pds(p, pop, book, 6, ms, _state(pop, 10**12))
    assert all(np.all(v == 0) for v in pds.values())


def test_walk_away_hazard_gives_its_analytic_probability(world):
    p, pop, parties, ms = world
    w = 0.05
    p = dataclasses.replace(p, walk_away_prob=w)
    t = 5
    book = _one_loan_each(pop, parties, open_month=t - 1)
    pd365 = _pds(p, pop, book, t, ms, _state(pop, 10**12))[365]
    # walking away at the start of month t + j leaves installment j + 1 (due in month t + j) unpaid;
    # it defaults within 365 days if its due date + 90 days falls before D + 365 days
    d, offset = int(ms[t]), int(book.day_offset_us[0])
    months_that_count = sum(1 for j in range(12) if ms[t + j] + offset + 90 * US_PER_DAY < d + 365 * US_PER_DAY)
    assert np.allclose(pd365, 1 - (1 - w) ** months_that_count, atol=1e-5)


def test_fraud_ring_members_never_pay(world):
    p, pop, _, ms = world
    fraud = np.flatnonzero(pop.fraud_ring >= 0)
    assert len(fraud) >= 4  # at least one ring from 1,000 parties
    book = _one_loan_each(pop, fraud, open_month=0)
    pds = _pds(p, pop, book, 1, ms, _state(pop, 10**12))
    assert np.allclose(pds[365], 1)


def test_truth_rows_cover_the_label_population_and_pds_are_ordered(small_run):
    truth = small_run.truth_table("loan_pd_monthly").to_pandas()
    assert len(truth) > 0
    assert not truth.duplicated(["party_id", "month_start"]).any()
    for a, b in (("true_pd_90d", "true_pd_180d"), ("true_pd_180d", "true_pd_365d")):
        assert (truth[a] <= truth[b]).all()
    assert truth["true_pd_365d"].between(0, 1).all()
    assert (truth["installments_paid"] <= 12).all()
    truth["as_of"] = truth["month_start"].dt.date
    p = small_run.params
    checked = 0
    for k in range(1, p.months):
        as_of = dt.date(p.start.year + (p.start.month - 1 + k) // 12, (p.start.month - 1 + k) % 12 + 1, 1)
        labels = default_labels(small_run.raw, as_of, horizon_days=90).to_pandas()
        have = set(truth.loc[truth["as_of"] == as_of, "party_id"])
        assert set(labels["party_id"]) <= have, as_of
        checked += len(labels)
    assert checked > 100


def test_loan_outcomes_extend_the_credit_file(small_run):
    outcomes = small_run.truth_table("loan_outcomes")
    loans = small_run.table("loans")
    assert outcomes.num_rows == loans.num_rows
    # every default in the credit file is in the outcomes, at the same time; the outcomes add later ones
    file_defaults = pc.sum(pc.is_valid(loans.column("defaulted_at"))).as_py()
    assert pc.sum(pc.is_valid(outcomes.column("defaulted_at"))).as_py() >= file_defaults
    joined = loans.select(["loan_id", "defaulted_at"]).join(outcomes.select(["loan_id", "defaulted_at"]), "loan_id",
                                                             right_suffix="_final").to_pandas()
    known = joined["defaulted_at"].notna()
    assert (joined.loc[known, "defaulted_at"] == joined.loc[known, "defaulted_at_final"]).all()
