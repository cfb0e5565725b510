"""The realism figures land in their aim ranges (docs/simulator.md) at a modest size."""

from __future__ import annotations

import pytest



@pytest.mark.slow
def test_realism_figures_are_in_their_aim_ranges(tmp_path, run_sim):
    run = run_sim(tmp_path, parties=12_000, months=24, seed=7)
    r = run.report.realism
    assert 0.02 <= r["default_rate_past_loans"] <= 0.08, r
    assert r["credit_history_share"] < 0.30, r
    assert 0.65 <= r["auc_traditional_logit"] <= 0.75, r
    # the simulator's own PD is the ceiling: well above what traditional data reaches
    assert r["auc_true_pd"] > r["auc_traditional_logit"] + 0.05, r
    assert r["auc_true_pd_vs_counterfactual"] > 0.8, r
    # the point of the product: simple alternative-data features beat the traditional fields
    assert r["auc_alternative_logit"] > r["auc_traditional_logit"], r
    # the loan truth (true PD of the label event) against the realized outcomes: it ranks well
    # and is calibrated within the share of defaults the Monte Carlo cannot see (network effects)
    assert r["auc_loan_true_pd_365d"] > 0.85, r
    assert 0.7 * r["loan_default_rate_365d"] <= r["mean_loan_true_pd_365d"] <= 1.1 * r["loan_default_rate_365d"], r
