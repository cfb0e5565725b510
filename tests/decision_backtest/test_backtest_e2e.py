"""`fieldbank backtest` end to end on a small simulated economy with trained models."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fieldbank.config import load_settings

REPO = Path(__file__).resolve().parents[2]
E2E_DATES = [dt.date(2023, m, 1) for m in (4, 5, 6, 7)] + [dt.date(2024, 1, 1)]


@pytest.fixture(scope="module")
def economy(tmp_path_factory: pytest.TempPathFactory):
    from fieldbank.lake.commands import ingest_command
    from fieldbank.risk.portrait_training import train_on_portraits
    from fieldbank.simulate.commands import simulate_command

    data_dir = tmp_path_factory.mktemp("backtest_economy")
    simulate_command(parties=8000, months=18, seed=11, start="2023-01-01", pd_paths=4, data_dir=data_dir, quiet=True)
    ingest_command(src=data_dir / "raw", data_dir=data_dir)
    settings = load_settings(data_dir=data_dir)
    train_on_portraits(settings, E2E_DATES, horizon_days=180, seed=3)
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
    assert summary["as_of"] == "2024-06-01" and summary["applicants"] == 8000 == summary["outcomes_known"]
    assert 0.02 < summary["population_bad_rate"] < 0.5
    approval = summary["approval_at_target"]
    assert set(approval) == {"champion", "alternative", "traditional", "truth"}
    assert approval["champion"] > approval["traditional"]  # the portrait includes more at the same bad rate
    champion, candidate = summary["policies"]
    assert champion["policy"] == "champion" and candidate["policy"] == "candidate"
    assert candidate["approved"] <= champion["approved"]  # the candidate only tightens the PD cap
    assert champion["approved"] + champion["declined"] + champion["referred"] == 8000
    assert "Plotly.newPlot" in out.read_text()


@pytest.mark.slow
def test_backtest_refuses_dates_the_models_saw(economy) -> None:
    from fieldbank.cli import app

    res = CliRunner().invoke(app, ["backtest", "--data-dir", str(economy.data_dir), "--as-of", "2024-01-01",
                                   "--bootstrap", "0"])
    assert res.exit_code == 2 and "after the models' training window" in res.output
