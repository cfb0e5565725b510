"""`fieldbank backtest` end to end on a small simulated economy with trained models."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fieldbank.config import load_settings
from fieldbank.risk.testing import trained_economy

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory):
    settings, _result = trained_economy(tmp_path_factory.mktemp("backtest_economy"), parties=5000, pd_paths=2)
    return settings


@pytest.mark.slow
def test_backtest_cli_end_to_end(economy) -> None:
    from fieldbank.cli import app

    out = economy.data_dir / "reports" / "bt.html"
    res = CliRunner().invoke(app, ["backtest", "--data-dir", str(economy.data_dir), "--bootstrap", "20",
                                   "--champion-policy", str(REPO / "policies" / "credit_policy.json"),
                                   "--policy", str(REPO / "policies" / "candidate_tight_cutoff.json"),
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(out.with_suffix(".json").read_text())
    # every party is an applicant, at the newest month with a ground-truth outcome (after the OOT date)
    assert summary["as_of"] == "2024-06-01" and summary["applicants"] == 5000 == summary["outcomes_known"]
    assert 0.02 < summary["population_bad_rate"] < 0.5
    approval = summary["approval_at_target"]
    assert set(approval) == {"champion", "alternative", "traditional", "truth"}
    assert approval["champion"] > approval["traditional"]  # the portrait includes more at the same bad rate
    champion, candidate = summary["policies"]
    assert champion["policy"] == "champion" and candidate["policy"] == "candidate"
    assert candidate["approved"] <= champion["approved"]  # the candidate only tightens the PD cap
    assert champion["approved"] + champion["declined"] + champion["referred"] == 5000
    assert "Plotly.newPlot" in out.read_text()


@pytest.mark.slow
def test_backtest_refuses_dates_the_models_saw(economy) -> None:
    from fieldbank.cli import app

    res = CliRunner().invoke(app, ["backtest", "--data-dir", str(economy.data_dir), "--as-of", "2024-01-01",
                                   "--bootstrap", "0"])
    assert res.exit_code == 2 and "after the models' training window" in res.output


@pytest.mark.slow
def test_without_truth_outcomes_come_from_the_lake(economy, tmp_path: Path) -> None:
    from fieldbank.decision.backtest import BacktestError, run_backtest

    settings = load_settings(data_dir=economy.data_dir, truth_dir=tmp_path / "no_truth")
    # the 180-day window of a date after the OOT month (2024-01-01) must close before the lake ends (2024-07-01)
    with pytest.raises(BacktestError, match="outcome window ends after"):
        run_backtest(settings, as_of=dt.date(2024, 2, 1), bootstrap=0)
    with pytest.raises(BacktestError, match="--amount-minor"):
        run_backtest(settings, champion_policy=REPO / "policies" / "credit_policy.json",
                     as_of=dt.date(2024, 1, 2), bootstrap=0)
    result = run_backtest(settings, champion_policy=REPO / "policies" / "credit_policy.json",
                          as_of=dt.date(2024, 1, 2), bootstrap=0, requested_amount_minor=500_000)
    frame = result.applicants.frame
    known = frame["realized_default"].notna()
    assert 0 < known.sum() < len(frame)  # only parties with a loan in the window have an outcome
    assert "truth" not in result.inclusion.curves and "lake loans" in result.applicants.outcome_source
    assert result.policies[0]["outcomes_known"] <= result.policies[0]["approved"]
