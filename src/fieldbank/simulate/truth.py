"""Ground truth: latent traits, monthly cash identity, true PD and the counterfactual label.

Nothing here is ever read by the model pipeline; it exists to judge models and policies.

* `pd_monthly`: at each month start, the simulator's own estimate of the probability that
  the party would reach 90+ DPD within 12 months on the *standard loan* (principal = 2
  months of its true expected income, 12 monthly installments, flat 1.5 %/month),
  by Monte Carlo over its own shock process (droughts, floods, price crashes, job
  losses, income noise), starting from the party's true state (cash, job, loans).
* `counterfactual`: whether the party *would* have reached 90+ DPD within 12 months had
  it taken the standard loan at that month start, replayed on its realized cash flows.
  The simulator runs 12 months past the period (state only, no events) so every month
  start of the period has a label.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fieldbank import contract
from fieldbank.simulate import credit, households as hh, loan_truth
from fieldbank.simulate.businesses import FACTORY_LABOUR_SHARE, owner_draw_propensity
from fieldbank.simulate.params import (
    ELECTRICITY_MULTIPLIER,
    FESTIVAL_MULTIPLIER,
    US_PER_DAY,
    SimParams,
)
from fieldbank.simulate.population import Population
from fieldbank.simulate.shocks import HARVEST_SHARE, draw_shocks

STANDARD_LOAN_INCOME_MONTHS = 2
STANDARD_LOAN_INSTALLMENTS = 12
DEFAULT_MONTHS_OVERDUE = 3  # 90 DPD = the oldest installment unpaid for three monthly cycles
MC_CHUNK_ELEMENTS = 1_500_000  # parties x paths per Monte Carlo block (bounds memory)
SEASONED_MONTHS = 6  # loans observed at least this long count in the realism figures

CASH_SCHEMA = pa.schema([
    ("party_id", pa.string()), ("month_start", contract.TIMESTAMP),
    ("cash_start_minor", pa.int64()), ("payments_in_minor", pa.int64()), ("payments_out_minor", pa.int64()),
    ("bills_paid_minor", pa.int64()), ("loan_in_minor", pa.int64()), ("loan_out_minor", pa.int64()),
    ("external_in_minor", pa.int64()), ("external_out_minor", pa.int64()), ("cash_end_minor", pa.int64()),
])
PD_SCHEMA = pa.schema([("party_id", pa.string()), ("month_start", contract.TIMESTAMP), ("true_pd_12m", pa.float32())])
CF_SCHEMA = pa.schema([("party_id", pa.string()), ("month_start", contract.TIMESTAMP),
                       ("would_default_12m", pa.bool_())])


def standard_installment(pop: Population, p: SimParams) -> np.ndarray:
    principal = STANDARD_LOAN_INCOME_MONTHS * pop.expected_income_minor
    return credit.installment_minor(principal, STANDARD_LOAN_INSTALLMENTS, p.flat_rate_per_month)


class Series:
    """Per party and month: realized income, committed outflows, discretionary outflows, cash."""

    def __init__(self, months: int, n: int) -> None:
        self.inc = np.zeros((months, n), np.float32)
        self.com = np.zeros((months, n), np.float32)
        self.dsc = np.zeros((months, n), np.float32)
        self.cash_start = np.zeros((months, n), np.int64)
        self.cut = np.zeros((months, n), np.float32)
        self.late_bills = np.zeros((months, n), bool)
        # what the event tables show (payments in; payments out + bills paid), for the
        # alternative-data realism figure
        self.seen_in = np.zeros((months, n), np.float32)
        self.seen_out = np.zeros((months, n), np.float32)

    def record(self, t: int, inc: np.ndarray, com: np.ndarray, dsc: np.ndarray, cut: np.ndarray) -> None:
        self.inc[t], self.com[t], self.dsc[t], self.cut[t] = inc, com, dsc, cut


class TruthWriter:
    """Streams the truth tables into the (staging) truth directory."""

    def __init__(self, directory: Path, pop: Population) -> None:
        self.dir = directory
        self.pop = pop
        self.cash_writer = pq.ParquetWriter(directory / "cash_monthly.parquet", CASH_SCHEMA)
        self.pd_writer = pq.ParquetWriter(directory / "pd_monthly.parquet", PD_SCHEMA)
        self.pd_by_month: list[np.ndarray] = []
        self.loan_pd_writer = pq.ParquetWriter(directory / "loan_pd_monthly.parquet", loan_truth.SCHEMA)
        self.loan_pd_rows: list[tuple[np.ndarray, int, np.ndarray]] = []  # (loans, month start us, pd 365 d)

    def _month(self, month_start_us: int) -> pa.Array:
        return pa.array(np.full(self.pop.n_parties, month_start_us, np.int64), contract.TIMESTAMP)

    def pd(self, t: int, month_start_us: int, pd: np.ndarray) -> None:
        assert np.all((pd >= 0) & (pd <= 1))
        self.pd_by_month.append(pd.astype(np.float32))
        self.pd_writer.write_table(pa.table([self.pop.party_ids, self._month(month_start_us), pa.array(pd, pa.float32())],
                                            schema=PD_SCHEMA))

    def loan_pd(self, pop: Population, book: credit.LoanBook, loans: np.ndarray, t: int, month_start_us: int,
                probabilities: np.ndarray) -> None:
        table = loan_truth.table(pop, book, loans, t, month_start_us, probabilities)
        self.loan_pd_writer.write_table(table)
        self.loan_pd_rows.append((loans, month_start_us, table.column("true_pd_365d").to_numpy()))

    def cash(self, t, month_start_us, cash_start, pay_in, pay_out, bills_paid, loan_in, loan_out, ext_in, ext_out,
             cash_end) -> None:
        # the cash identity every party obeys: checked here, and again by the tests from the events
        lhs = cash_start + pay_in - pay_out - bills_paid + loan_in - loan_out + ext_in - ext_out
        assert np.array_equal(lhs, cash_end), "cash identity broken"
        arrays = [self.pop.party_ids, self._month(month_start_us)] + [
            pa.array(np.asarray(a, np.int64)) for a in
            (cash_start, pay_in, pay_out, bills_paid, loan_in, loan_out, ext_in, ext_out, cash_end)]
        self.cash_writer.write_table(pa.table(arrays, schema=CASH_SCHEMA))

    def summary(self, p: SimParams, rows: dict, realism: dict, seconds: float) -> None:
        self.summary_data = {"params": p.as_dict(), "rows": rows, "realism": realism, "seconds": round(seconds, 2)}
        (self.dir / "summary.json").write_text(json.dumps(self.summary_data, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- true PD (Monte Carlo)


def true_pd(p: SimParams, pop: Population, moy: int, cash: np.ndarray, employed: np.ndarray,
            stressed: np.ndarray, revenue_ewma: np.ndarray, book: credit.LoanBook,
            rng: np.random.Generator) -> np.ndarray:
    """P(90+ DPD within 12 months on the standard loan taken now), per party, by Monte Carlo.

    The forward model is the simulation's own household and business cash rules with
    fresh shocks; it holds the network fixed (no employer failures, no lost customers),
    which is what makes it an estimate and not the realized outcome.
    """
    k = p.pd_paths
    n_h = pop.n_households
    shocks = [draw_shocks(p, pop.climate_risk, (moy + j) % 12, k, rng) for j in range(12)]
    inst_std = standard_installment(pop, p).astype(np.float32)
    # existing loan of the past lender: installment and installments still to pay
    existing = np.zeros(pop.n_parties, np.float32)
    remaining = np.zeros(pop.n_parties, np.int64)
    active = np.flatnonzero(book.closed_at_us < 0) if len(book) else np.zeros(0, np.int64)
    existing[book.party[active]] = book.installment_minor[active]
    remaining[book.party[active]] = book.n_installments - book.paid_count[active]
    fraud = pop.fraud_ring >= 0
    pd = np.zeros(pop.n_parties, np.float32)
    step = max(1, MC_CHUNK_ELEMENTS // k)
    for lo in range(0, n_h, step):
        idx = np.arange(lo, min(n_h, lo + step))
        pd[idx] = _household_paths(p, pop, idx, moy, cash, employed, stressed, shocks, inst_std, existing,
                                   remaining, rng)
    for lo in range(n_h, pop.n_parties, step):
        idx = np.arange(lo, min(pop.n_parties, lo + step))
        pd[idx] = _business_paths(p, pop, idx, cash, revenue_ewma, shocks, inst_std, existing, remaining, rng)
    pd[fraud] = 1.0  # ring members never intend to repay
    return pd


def _household_paths(p, pop, idx, moy, cash, employed, stressed, shocks, inst_std, existing, remaining, rng):
    k = p.pd_paths
    n = len(idx)
    vol = pop.volatility[idx].astype(np.float32)
    has_emp = pop.employer[idx] >= 0
    emp_stressed = np.zeros(n, bool)
    emp_stressed[has_emp] = stressed[pop.employer[idx][has_emp]]
    p_sep = (p.job_separation_prob * (1 + 4 * vol) + 0.05 * emp_stressed).astype(np.float32)
    e = np.broadcast_to(employed[idx], (k, n)).copy()
    c = np.broadcast_to(cash[idx].astype(np.float32), (k, n)).copy()
    paid = np.zeros((k, n), np.int16)
    defaulted = np.zeros((k, n), bool)
    kappa = hh.spend_propensity(pop.discipline[idx]).astype(np.float32)
    discipline = pop.discipline[idx].astype(np.float32)
    ess_total = pop.ess_need_minor[idx].sum(axis=1).astype(np.float32)
    wage = pop.wage_minor[idx].astype(np.float32)
    farm = pop.farm_annual_minor[idx].astype(np.float32)
    crop, region = pop.crop[idx], pop.region[idx]
    bills = pop.bill_minor[idx].sum(axis=1).astype(np.float32)
    elec = pop.bill_minor[idx, 0].astype(np.float32)
    disc_total = pop.disc_want_minor[idx].sum(axis=1).astype(np.float32)
    I = inst_std[idx]
    ex, rem = existing[idx], remaining[idx]
    need_by_month = pop.need_by_month_minor[idx]
    reserve_months_std = np.round(1 + 5 * discipline).astype(np.float32)
    reserve_base = 2.0 * discipline * ess_total
    p_find = np.float32(p.job_finding_prob)
    for j in range(12):
        m = (moy + j) % 12
        if j > 0:  # one uniform draw decides both leaving and finding a job
            u = rng.random((k, n), np.float32)
            e = np.where(e, u >= p_sep, u < p_find)
        avail = c + e * wage
        share = HARVEST_SHARE[crop, m].astype(np.float32)
        grows = share > 0
        if grows.any():
            mult = shocks[j].crop_multiplier[:, region[grows], crop[grows]].astype(np.float32)
            noise = np.exp(rng.standard_normal((k, int(grows.sum())), np.float32) * vol[grows])
            avail[:, grows] += farm[grows] * share[grows] * mult * noise
        need = need_by_month[:, m]
        floor = need * np.float32(hh.ESSENTIAL_FLOOR)
        avail -= np.minimum(floor, avail)
        if j < rem.max(initial=0):
            avail -= np.where((j < rem) & (avail >= ex), ex, 0)
        if j >= 1:
            defaulted |= (j - 1 - paid) >= DEFAULT_MONTHS_OVERDUE
            n_pay = np.minimum(j - paid, np.floor(avail / I)).astype(np.int16)
            paid += n_pay
            avail -= n_pay * I
        avail -= np.minimum(need - floor, avail)
        bill = bills + elec * np.float32(ELECTRICITY_MULTIPLIER[m] - 1)
        avail -= np.where(avail >= bill, bill, 0)
        reserve = reserve_base + ex * np.minimum(np.maximum(rem - j - 1, 0), reserve_months_std)
        reserve = reserve + I * np.minimum(12 - paid, reserve_months_std)
        avail -= np.minimum(disc_total * np.float32(FESTIVAL_MULTIPLIER[m]), kappa * np.maximum(avail - reserve, 0))
        c = avail
    defaulted |= (12 - 1 - paid) >= DEFAULT_MONTHS_OVERDUE
    return defaulted.mean(axis=0)


def _business_paths(p, pop, idx, cash, revenue_ewma, shocks, inst_std, existing, remaining, rng):
    k = p.pd_paths
    n = len(idx)
    b = idx - pop.n_households
    vol = pop.volatility[idx].astype(np.float32)
    region = pop.region[idx]
    rev = revenue_ewma[b].astype(np.float32)
    factory = pop.is_factory[b]
    payroll = np.zeros(n, np.float32)
    payroll[factory] = rev[factory] * FACTORY_LABOUR_SHARE
    fixed = (pop.overhead_minor[b] + pop.b_bill_minor[b].sum(axis=1)).astype(np.float32)
    emp = pop.employer[pop.employer >= 0]
    wages = np.bincount(emp, weights=pop.wage_minor[pop.employer >= 0], minlength=pop.n_businesses)[b]
    fixed += wages.astype(np.float32)
    cogs = pop.cogs_ratio[b].astype(np.float32)
    kappa = owner_draw_propensity(pop.discipline[idx]).astype(np.float32)
    target = (2.0 * (wages + pop.overhead_minor[b]) * (0.5 + pop.management_quality[idx])).astype(np.float32)
    c = np.broadcast_to(cash[idx].astype(np.float32), (k, n)).copy()
    paid = np.zeros((k, n), np.int16)
    defaulted = np.zeros((k, n), bool)
    I = inst_std[idx]
    ex, rem = existing[idx], remaining[idx]
    for j in range(12):
        demand = np.where(factory, shocks[j].factory_demand[:, region], 1.0)
        inc = rev * demand * np.exp(rng.standard_normal((k, n), np.float32) * (0.6 * vol + 0.08))
        avail = c + inc
        avail -= np.minimum(cogs * inc + fixed, avail)
        pay_ex = (j < rem) & (avail >= ex)
        avail -= np.where(pay_ex, ex, 0)
        if j >= 1:
            defaulted |= (j - 1 - paid) >= DEFAULT_MONTHS_OVERDUE
            n_pay = np.minimum(j - paid, np.floor(avail / I)).astype(np.int16)
            paid += n_pay
            avail -= n_pay * I
        avail -= kappa * np.maximum(avail - target, 0)
        c = avail
    defaulted |= (12 - 1 - paid) >= DEFAULT_MONTHS_OVERDUE
    return defaulted.mean(axis=0)


# --------------------------------------------------------------------------- counterfactual


def counterfactual(p: SimParams, pop: Population, series: Series) -> np.ndarray:
    """would_default_12m per (month start, party): the standard loan replayed on realized flows.

    The principal is spent at once (as real borrowers do in the simulation); each month the
    installment is paid, oldest first, from cash left after the party's realized essential
    and committed outflows, before discretionary spending, which is then cut to fit.
    """
    n_h = pop.n_households
    inst = standard_installment(pop, p).astype(np.float32)
    kappa = np.r_[hh.spend_propensity(pop.discipline[:n_h]), owner_draw_propensity(pop.discipline[n_h:])]
    kappa = kappa.astype(np.float32)
    fraud = pop.fraud_ring >= 0
    discipline = np.r_[pop.discipline[:n_h], np.zeros(pop.n_businesses)].astype(np.float32)
    ess_total = np.r_[pop.ess_need_minor.sum(axis=1), np.zeros(pop.n_businesses)].astype(np.float32)
    out = np.zeros((p.months, pop.n_parties), bool)
    for s in range(p.months):
        assert s + 12 <= len(series.inc), "not enough simulated future for the counterfactual"
        c = series.cash_start[s].astype(np.float32)
        paid = np.zeros(pop.n_parties, np.int16)
        defaulted = np.zeros(pop.n_parties, bool)
        for j in range(12):
            avail = np.maximum(c + series.inc[s + j] - (series.com[s + j] - series.cut[s + j]), 0)
            if j >= 1:
                defaulted |= (j - 1 - paid) >= DEFAULT_MONTHS_OVERDUE
                n_pay = np.where(fraud, 0, np.minimum(j - paid, np.floor(avail / inst))).astype(np.int16)
                paid += n_pay
                avail -= n_pay * inst
            avail -= np.minimum(series.cut[s + j], avail)
            reserve = hh.reserve_minor(discipline, ess_total, inst, 12 - paid)
            avail -= np.minimum(series.dsc[s + j], kappa * np.maximum(avail - reserve, 0))
            c = avail
        defaulted |= (12 - 1 - paid) >= DEFAULT_MONTHS_OVERDUE
        out[s] = defaulted
    return out


# --------------------------------------------------------------------------- realism


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def traditional_features(pop: Population) -> np.ndarray:
    """What a scorecard on traditional data sees: declared income and assets, age."""
    income = pop.declared_income_minor.astype(np.float64)
    income_missing = ~pop.declared_income_shown
    assets = pop.declared_assets_minor.astype(np.float64)
    assets_missing = assets < 0
    age = (2023 - pop.birth_year).astype(np.float64)
    age_missing = ~pop.birth_year_shown
    log_income = np.where(income_missing, np.nan, np.log1p(income))
    log_assets = np.where(assets_missing, np.nan, np.log1p(np.maximum(assets, 0)))
    age = np.where(age_missing, np.nan, age)
    cols = []
    for col, miss in ((log_income, income_missing), (log_assets, assets_missing), (age, age_missing)):
        fill = np.nanmedian(col) if (~miss).any() else 0.0
        cols += [np.where(miss, fill, col), miss.astype(np.float64)]
    cols.append(cols[4] ** 2)  # age squared: lenders prefer the middle-aged
    return np.column_stack(cols)


def alternative_features(series: Series, parties: np.ndarray, open_month: np.ndarray,
                         window: int = 6) -> np.ndarray:
    """Simple features a lender could compute from the event tables before the loan opened.

    Mean money in and out per month, net flow as a share of money in, month-to-month
    variability of money in, and the share of months with late or unpaid bills, over the
    `window` months before the loan (zeros when there is no history).
    """
    months = np.arange(series.seen_in.shape[0])[:, None]
    w = ((months < open_month[None, :]) & (months >= open_month[None, :] - window)).astype(np.float32)
    n_months = np.maximum(w.sum(axis=0), 1)
    flow_in = series.seen_in[:, parties] * w
    flow_out = series.seen_out[:, parties] * w
    mean_in = flow_in.sum(axis=0) / n_months
    mean_out = flow_out.sum(axis=0) / n_months
    net_share = (flow_in.sum(axis=0) - flow_out.sum(axis=0)) / (flow_in.sum(axis=0) + 1.0)
    var_in = ((series.seen_in[:, parties] - mean_in) ** 2 * w).sum(axis=0) / n_months
    cv_in = np.sqrt(var_in) / (mean_in + 1.0)
    late = (series.late_bills[: w.shape[0], parties] * w).sum(axis=0) / n_months
    return np.column_stack([np.log1p(mean_in), np.log1p(mean_out), net_share, cv_in, late, w.sum(axis=0)])


def logit_auc(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Cross-validated (5-fold) AUC of a standardised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if y.sum() < 10 or (len(y) - y.sum()) < 10:
        return float("nan")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, x, y, cv=folds, method="predict_proba")[:, 1]
    return _auc(y, proba)


def loan_truth_check(tw: TruthWriter, final: credit.LoanBook) -> dict:
    """The loan truth against what happened: every (open loan, month start) of the period, its
    realized label from the book at the end of the simulation (12 months past the period)."""
    if not tw.loan_pd_rows:
        return {}
    pd_365 = np.concatenate([r[2] for r in tw.loan_pd_rows])
    realized = np.concatenate([(final.defaulted_at_us[loans] >= d) & (final.defaulted_at_us[loans] < d + 365 * US_PER_DAY)
                               for loans, d, _ in tw.loan_pd_rows])
    return {
        "loan_truth_rows": int(len(pd_365)),
        "loan_default_rate_365d": float(realized.mean()) if len(realized) else float("nan"),
        "mean_loan_true_pd_365d": float(pd_365.mean()) if len(pd_365) else float("nan"),
        "auc_loan_true_pd_365d": _auc(realized.astype(np.int64), pd_365),
    }


def finish(tw: TruthWriter, p: SimParams, pop: Population, series: Series, snapshot: credit.LoanBook,
           month_start: np.ndarray, final: credit.LoanBook) -> dict:
    """Write traits and counterfactual; close the writers; compute the realism figures.

    `snapshot` is the credit file at the period end (the loans table), `final` the book at the
    end of the simulated horizon (realized outcomes of the loan truth)."""
    tw.cash_writer.close()
    tw.pd_writer.close()
    tw.loan_pd_writer.close()
    # outcomes through the simulated horizon: the realized labels of the loan truth (the lake's
    # loans table stops at the period end)
    pq.write_table(pa.table({
        "loan_id": pa.array([f"L{i}" for i in range(len(final))], pa.string()),
        "party_id": pop.party_ids.take(pa.array(final.party)),
        "defaulted_at": pa.array(final.defaulted_at_us, contract.TIMESTAMP, mask=final.defaulted_at_us < 0),
    }), tw.dir / "loan_outcomes.parquet")
    n = pop.n_parties
    cf = counterfactual(p, pop, series)
    cf_writer = pq.ParquetWriter(tw.dir / "counterfactual.parquet", CF_SCHEMA)
    for s in range(p.months):
        cf_writer.write_table(pa.table([pop.party_ids, tw._month(int(month_start[s])), pa.array(cf[s])],
                                       schema=CF_SCHEMA))
    cf_writer.close()
    traits = pa.table({
        "party_id": pop.party_ids,
        "kind": pa.array(np.where(np.arange(n) < pop.n_households, "household", "business")),
        "discipline": pa.array(pop.discipline.astype(np.float32)),
        "volatility": pa.array(pop.volatility.astype(np.float32)),
        "management_quality": pa.array(pop.management_quality.astype(np.float32)),
        "expected_income_minor": pa.array(pop.expected_income_minor, pa.int64()),
        "assets_minor": pa.array(pop.assets_minor, pa.int64()),
        "climate_risk": pa.array(pop.climate_risk[pop.region].astype(np.float32)),
        "is_factory": pa.array(np.r_[np.zeros(pop.n_households, bool), pop.is_factory]),
        "fraud_ring": pa.array(pop.fraud_ring, pa.int32(), mask=pop.fraud_ring < 0),
    })
    pq.write_table(traits, tw.dir / "traits.parquet")

    # realism figures on the past lender's seasoned loans
    seasoned = snapshot.open_month <= p.months - 1 - SEASONED_MONTHS
    if not seasoned.any():
        seasoned = np.ones(len(snapshot), bool)
    parties = snapshot.party[seasoned]
    y = (snapshot.defaulted_at_us[seasoned] >= 0).astype(np.int64)
    pd_at_open = np.stack(tw.pd_by_month)[snapshot.open_month[seasoned], parties]
    months_before = np.arange(p.months)[:, None]
    open_m = snapshot.open_month[seasoned]
    # an alternative-data signal: share of the 6 months before the loan with late or unpaid bills
    window = (months_before < open_m[None, :]) & (months_before >= open_m[None, :] - 6)
    late_share = (series.late_bills[: p.months][:, parties] & window).sum(axis=0) / np.maximum(window.sum(axis=0), 1)
    with_history = np.unique(snapshot.party)
    trad = traditional_features(pop)[parties]
    alt = alternative_features(series, parties, open_m)
    return {
        "loans": int(len(snapshot)),
        "seasoned_loans": int(seasoned.sum()),
        "default_rate_past_loans": float(y.mean()) if len(y) else float("nan"),
        "credit_history_share": float(len(with_history) / n),
        "auc_traditional_logit": logit_auc(trad, y, p.seed),
        "auc_alternative_logit": logit_auc(alt, y, p.seed),
        "auc_traditional_plus_alternative_logit": logit_auc(np.column_stack([trad, alt]), y, p.seed),
        "auc_true_pd": _auc(y, pd_at_open),
        "auc_late_bills_6m": _auc(y, late_share),
        "population_default_rate_standard_loan": float(cf.mean()),
        "mean_true_pd": float(np.mean(np.stack(tw.pd_by_month))),
        "auc_true_pd_vs_counterfactual": _auc(cf.ravel(), np.stack(tw.pd_by_month).ravel()),
        "fraud_ring_members": int((pop.fraud_ring >= 0).sum()),
        **loan_truth_check(tw, final),
    }
