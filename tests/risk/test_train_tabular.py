"""Generic training mode end to end through the CLI, plus its guards and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fieldbank.cli import app
from fieldbank.risk import registry
from fieldbank.risk.features import FeatureSpec
from fieldbank.risk.models import LgbmPD, ScorecardPD
from fieldbank.risk.tabular import load_table

runner = CliRunner()
pytestmark = pytest.mark.slow


def _train(credit_csv: Path, data_dir: Path, *extra: str):
    args = ["train", "--table", str(credit_csv), "--target", "outcome", "--bad-value", "bad",
            "--drop", "applicant_id", "--folds", "2", "--repeats", "1", "--data-dir", str(data_dir), *extra]
    return runner.invoke(app, args, catch_exceptions=False)


def test_train_cv_registers_a_model_that_reloads_identically(credit_csv: Path, tmp_path: Path) -> None:
    result = _train(credit_csv, tmp_path, "--drop", "applied_at", "--increasing-risk", "days_late")
    assert result.exit_code == 0, result.output
    assert "cross-validation" in result.output
    folder = tmp_path / "models" / "applicants" / "0001"
    metrics = json.loads((folder / "metrics.json").read_text())
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["features"] == ["days_late", "income", "noise", "region"]
    assert len(meta["data_sha256"]) == 64 and meta["libraries"]["lightgbm"]
    assert len(metrics["folds"]) == 2
    # The data carry real signal; every model must find it, and LightGBM is calibrated.
    for model in ("lgbm", "scorecard", "logistic"):
        assert metrics["summary"][model]["auc"]["mean"] > 0.70, model
    assert abs(metrics["summary"]["lgbm"]["mean_pd"]["mean"] - metrics["bad_rate"]) < 0.03

    spec = FeatureSpec.from_json(json.loads((folder / "features.json").read_text()))
    data = pd.read_csv(credit_csv).head(50)
    lgbm = LgbmPD.load(folder, spec)
    scorecard = ScorecardPD.load(folder, spec)
    pd_lgbm = lgbm.predict_pd(data)
    assert np.all((pd_lgbm > 0) & (pd_lgbm < 1))
    points = scorecard.points(data)
    assert np.corrcoef(points, scorecard.predict_raw(data))[0, 1] < -0.9, "more points = safer"
    # Reason codes: TreeSHAP contributions add up to the log-odds of the mean raw score's trees.
    assert lgbm.contributions(data).shape == (50, 4)

    # A second run is a new version; promote makes one champion.
    assert _train(credit_csv, tmp_path, "--drop", "applied_at").exit_code == 0
    assert registry.versions_of(tmp_path / "models", "applicants") == [1, 2]
    result = runner.invoke(app, ["models", "promote", "applicants", "--version", "1", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert registry.get_champion(tmp_path / "models") == ("applicants", 1)
    listing = runner.invoke(app, ["models", "list", "--data-dir", str(tmp_path)])
    assert "★" in listing.output and listing.output.count("applicants") >= 2


def test_train_with_time_column_validates_out_of_time(credit_csv: Path, tmp_path: Path) -> None:
    result = _train(credit_csv, tmp_path, "--time-column", "applied_at")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "models" / "applicants" / "0001" / "metrics.json").read_text())
    assert metrics["validation"].startswith("out-of-time")
    assert metrics["folds"][0]["lgbm"]["rows"] == 240  # the newest 20% of 1,200 rows
    assert metrics["train"]["lgbm"]["rows"] == 960


def test_monotone_check_catches_a_violation(credit_csv: Path) -> None:
    data = load_table(credit_csv, "outcome", ["bad"], drop=["applicant_id", "applied_at"])
    spec = FeatureSpec.infer(data.x)
    half = len(data.y_bad) // 2
    model = LgbmPD(spec).fit(data.x.iloc[:half], data.y_bad[:half], data.x.iloc[half:], data.y_bad[half:])
    # Claim the opposite of the truth: more days late = safer. The trees disagree.
    model.spec = FeatureSpec(spec.numeric, spec.categorical, {"days_late": -1})
    with pytest.raises(AssertionError, match="days_late"):
        model.check_monotone(data.x)
