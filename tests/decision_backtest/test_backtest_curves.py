"""The backtest's arithmetic on planted applicants, where every answer is known by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from fieldbank.decision.backtest import (
    Applicants, BacktestError, BacktestResult, Economics, Replay, approval_at_target, applicant_facts,
    choose_as_of, inclusion, policy_metrics, sweep,
)
from fieldbank.decision.backtest_report import render_html, write_outputs

AS_OF = dt.date(2024, 12, 1)


def test_sweep_by_hand() -> None:
    # scores 1..10; the 5th, 8th, 9th and 10th applicants default
    y = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1, 1], float)
    score = np.arange(1, 11, dtype=float)
    pd_ = score / 100
    c = sweep("champion", score, pd_, y)
    assert c.approved_n.tolist() == list(range(1, 11))
    assert c.realized_bad_rate[3] == 0 and c.realized_bad_rate[4] == pytest.approx(1 / 5)
    assert c.realized_bad_rate[6] == pytest.approx(1 / 7) and c.realized_bad_rate[-1] == pytest.approx(0.4)
    assert c.expected_bad_rate[2] == pytest.approx((0.01 + 0.02 + 0.03) / 3)
    assert c.approval_at(0.15) == pytest.approx(0.7)  # 1 bad in 7 = 14.3% <= 15%; 2 in 8 = 25% is not
    assert c.approval_at(0.0) == pytest.approx(0.4)
    assert c.approval_at(0.5) == pytest.approx(1.0)
    assert c.bad_rate_at_approval(0.5) == pytest.approx(1 / 5)
    assert c.ex_ante_index(0.02) == 2  # mean PD of the first 3 is 2%, of the first 4 is 2.5%


def test_ties_are_approved_together() -> None:
    score = np.array([1, 1, 2, 2], float)
    y = np.array([0, 1, 0, 0], float)
    c = sweep("traditional", score, score / 10, y)
    assert c.approved_n.tolist() == [2, 4]
    assert c.realized_bad_rate.tolist() == [0.5, 0.25]
    assert c.approval_at(0.25) == 1.0 and c.approval_at(0.2) == 0.0


def test_unknown_outcomes_are_left_out() -> None:
    score = np.array([1, 2, 3, 4], float)
    y = np.array([0, np.nan, 1, np.nan])
    c = sweep("champion", score, score / 10, y)
    assert c.applicants_n == 2 and c.realized_bad_rate.tolist() == [0.0, 0.5]
    with pytest.raises(BacktestError, match="no applicant has a known outcome"):
        sweep("champion", score, score, np.full(4, np.nan))


@hsettings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.booleans()), min_size=1, max_size=200),
       st.sampled_from([0.0, 0.02, 0.1, 0.3]))
def test_fast_approval_matches_the_sweep(rows, target) -> None:
    score = np.array([r[0] for r in rows], float)
    y = np.array([r[1] for r in rows], float)
    assert approval_at_target(score, y, target) == pytest.approx(sweep("x", score, score, y).approval_at(target))


def planted(n_good: int = 900, n_bad: int = 100, seed: int = 0) -> Applicants:
    """A champion that ranks every good before every bad; a traditional model that is noise.
    With 900 goods and 100 bads the champion approves the 900 goods plus 18 bads at a 2% bad
    rate (18/918 = 1.96%, 19/919 = 2.07%): 91.8% of applicants."""
    rng = np.random.default_rng(seed)
    n = n_good + n_bad
    y = np.r_[np.zeros(n_good), np.ones(n_bad)]
    champion = np.r_[rng.uniform(0, 0.5, n_good), rng.uniform(0.5, 1, n_bad)]
    traditional = rng.uniform(0, 1, n)
    frame = pd.DataFrame({
        "party_id": [f"P{i:05d}" for i in range(n)], "party_kind": ["household"] * n,
        "thin_has_credit_file": np.r_[np.zeros(n // 2), np.ones(n - n // 2)],
        "pd_champion": champion / 10, "score_champion": champion,
        "pd_traditional": traditional / 10, "score_traditional": traditional,
        "realized_default": y, "true_pd": np.nan, "requested_amount_minor": np.full(n, 100_000, np.int64),
    })
    return Applicants(frame, AS_OF, Path("models/portrait/0001"), {"champion": "lgbm_both",
                      "traditional": "lgbm_traditional"}, "planted", {"as_of": ["2023-05-01"], "oot_as_of": "2024-07-01"})


def test_inclusion_on_planted_applicants() -> None:
    inc = inclusion(planted(), target=0.02, bootstrap=50)
    assert inc.approval["champion"] == pytest.approx(0.918)
    assert set(inc.curves) == {"champion", "traditional"}
    # noise cannot hold a 2% bad rate on a 10% bad population beyond a handful of applicants
    assert inc.approval["traditional"] < 0.05
    assert inc.ratio is None or inc.ratio >= 2
    lo, hi = inc.interval["champion"]
    assert lo <= inc.approval["champion"] <= hi
    # at the champion's approval, noise shows the population's bad rate, the champion 2%
    assert inc.bad_rate_at_champion_approval["champion"] <= 0.02
    assert inc.bad_rate_at_champion_approval["traditional"] > 0.07
    # the applicants without a credit file are the first 500, all good: the champion approves them all
    assert inc.no_credit_file_approval["champion"] == 1.0
    assert inc.no_credit_file_approval["traditional"] < 0.05
    with pytest.raises(BacktestError, match="target bad rate"):
        inclusion(planted(), target=0.0)


def test_money_by_hand() -> None:
    app = planted(n_good=2, n_bad=1)
    f = app.frame
    f["pd_champion"] = [0.1, 0.1, 0.1]
    f["realized_default"] = [0.0, 1.0, 0.0]
    outcome = np.array(["approve", "approve", "decline"])
    rep = Replay("p", "p.json", "1", outcome, np.array(["A", "B", "E"]), np.array([100_000, 100_000, 0]),
                 np.array([2_000, 2_000, 0]), np.array([0.5, 0.5, np.nan]), {}, 0.5)
    m = policy_metrics(rep, app, Economics(term_days=365, cost_of_funds_bps=300, operating_cost_bps=200))
    # 12 installments: average balance 13/24 of the principal for a year
    good = 8_125  # floor(100,000 x (2,000 - 500) bps x 13/24)
    bad = -(50_000 + 2_709)  # LGD 0.5 x 100,000, plus ceil(100,000 x 500 bps x 13/24) of costs
    assert (m["approved"], m["declined"], m["referred"]) == (2, 1, 0)
    assert m["approval_rate"] == pytest.approx(2 / 3)
    assert m["lent_minor"] == 200_000 and m["mean_apr_bps"] == 2_000
    assert m["expected_default_rate"] == pytest.approx(0.1) and m["realized_default_rate"] == pytest.approx(0.5)
    assert m["expected_loss_minor"] == 10_000 and m["realized_loss_minor"] == 50_000
    assert m["realized_profit_minor"] == good + bad
    assert m["expected_profit_minor"] == round(2 * (0.9 * good + 0.1 * bad))


def test_as_of_must_follow_the_training_window(tmp_path: Path) -> None:
    meta = {"training_window": {"as_of": ["2023-05-01", "2024-01-01"], "oot_as_of": "2024-07-01"}}
    with pytest.raises(BacktestError, match="after the models' training window"):
        choose_as_of(meta, tmp_path, dt.date(2024, 7, 1))
    assert choose_as_of(meta, tmp_path, dt.date(2024, 8, 1)) == dt.date(2024, 8, 1)
    with pytest.raises(BacktestError, match="no ground truth"):
        choose_as_of(meta, tmp_path, None)
    with pytest.raises(BacktestError, match="training_window"):
        choose_as_of({}, tmp_path, dt.date(2024, 8, 1))


def test_facts_as_the_service_builds_them() -> None:
    from fieldbank.decision.sources import Parties

    app = planted(n_good=5, n_bad=0)
    f = app.frame
    f["party_kind"] = ["household", "household", "business", "household", "household"]
    f["party_age_years"] = [40, np.nan, 30, np.nan, 50]
    f["party_tenure_days"] = [3000.0, 100.0, 0.0, 400.0, 900.0]
    f["thin_families_with_data_n"] = [3, 1, 0, 2, 2]
    f["thin_has_credit_file"] = [1, 0, 0, 0, 1]
    f["hh_income_minor_90d"] = [300_000, 0, 0, 90_000, 600_000]
    f["hh_income_minor_365d"] = [1_200_000, 0, 0, 360_000, 2_400_000]
    f["biz_revenue_minor_90d"] = [0, 0, 9_000_000, 0, 0]
    # the lake's parties: P00001 has a birth year the portrait lacks; four parties share a device;
    # P00004 declares far more income than it is seen to receive
    parties = Parties({"party_id": [f"P{i:05d}" for i in range(5)] + ["X1"],
                       "kind": ["household", "household", "business", "household", "household", "household"],
                       "birth_year": [1984, 1990, 1994, None, 1974, 1980],
                       "declared_income_minor": [None, None, None, None, 9_000_000, None],
                       "phone_hash": ["p0", "p1", "p2", "p3", "p4", "p5"],
                       "device_hash": ["d0", "dd", "dd", "dd", "d4", "dd"]})
    sf = applicant_facts(app, parties=parties, term_days=180)
    facts = sf.facts
    assert [x["age_years"] for x in facts] == [40, 34, 30, 0, 50]  # as_of 2024: 2024 - birth year
    assert sf.service_refer[3] and sf.service_refer[0] is None  # unknown age: the service refers
    assert [x["thin_file"] for x in facts] == [False, True, True, True, False]
    assert facts[0]["monthly_income_minor"] == 100_000 and facts[2]["monthly_revenue_minor"] == 3_000_000
    assert facts[0]["months_observed"] == 100 and facts[2]["months_observed"] == 0  # no data: 0 months
    assert sf.flags[1] == ["shared_device"] and sf.flags[0] == []  # "dd" is used by 4 > 3 parties
    assert sf.flags[4] == ["declared_income_above_observed"] and facts[4]["fraud_flags"] == 1
    assert all(x["term_days"] == 180 and x["existing_exposure_minor"] == 0 and isinstance(x["pd_12m"], float)
               for x in facts)


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    app = planted()
    result = BacktestResult(app, inclusion(app, bootstrap=20), [], [], Economics(), {"applicants": 1.0})
    html_path, json_path = write_outputs(result, tmp_path / "r" / "backtest.html")
    from plotly.offline import get_plotlyjs

    text = html_path.read_text()
    assert get_plotlyjs() in text  # the library inlined
    page = text.replace(get_plotlyjs(), "")  # (the bundle itself mentions a CDN in its own code)
    assert "src=" not in page and "cdn" not in page.lower() and "http" not in page
    assert "Plotly.newPlot" in text and "91.80%" in text
    import json

    def no_nan(name: str):
        raise AssertionError(f"{name} in the JSON")

    summary = json.loads(json_path.read_text(), parse_constant=no_nan)  # strict JSON: no NaN / Infinity
    assert summary["target_bad_rate"] == 0.02 and summary["approval_at_target"]["champion"] == 0.918
    assert render_html(result).count("<table>") >= 3
