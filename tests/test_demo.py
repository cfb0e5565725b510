"""The README's main command, `fieldbank demo` (what `make demo` runs), end to end on a small size."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from fieldbank import contract
from fieldbank.cli import app
from fieldbank.lake.read import read_lake_table

pytestmark = pytest.mark.slow


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--parties", "4000", "--months", "20", "--seed", "3", "--borrowers", "40", "--bank-days", "75",
              "--data-dir", str(data_dir), "--no-serve"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "demo done" in result.output
    assert "books balance and match every stored balance" in result.output
    # Every simulated table landed in the lake, nothing was quarantined: the simulator keeps the contract.
    for name in contract.TABLE_ORDER:
        table = read_lake_table(data_dir / "lake", name)
        assert table.schema.equals(contract.TABLES[name].schema)
        if name != "loans":
            assert table.num_rows > 0, name
    assert not list((data_dir / "quarantine").rglob("*.parquet"))
    # The bank's loan outcomes came back to the lake, next to the past lender's loans.
    loans = read_lake_table(data_dir / "lake", "loans")
    ours = [row for row in loans.to_pylist() if row["lender"] == "fieldbank"]
    # 40 parties applied through the decision service; the approved ones were booked.
    approved = int(result.output.split("'approve': ")[1].split(",")[0])
    assert 0 < approved <= 40 and len(ours) == approved and max(row["max_dpd"] for row in ours) > 0
    assert (data_dir / "truth" / "summary.json").exists()
    # Portraits for the latest month start and a year earlier, with the feature-quality report.
    # 20 months from 2023-01: the bank opens 2024-09-01; the labelled portrait is a year earlier.
    portraits = sorted(p.name for p in (data_dir / "portraits").iterdir())
    assert {"as_of=2023-09-01", "as_of=2024-09-01"} <= set(portraits)
    assert (data_dir / "reports" / "feature_quality_2023-09-01.html").exists()
    # Models were trained on the portraits, registered with a report, promoted, and used to score.
    assert (data_dir / "models" / "portrait" / "0001" / "report.html").exists()
    assert "champion is now portrait v1" in result.output and "score" in result.output
    # The backtest replayed every party under the candidate and the champion policy, with the inclusion curves.
    assert list((data_dir / "reports").glob("backtest_*.html")) and "champion / traditional approval" in result.output
    # The last step prints the web pages' URLs and the demo sign-ins (and serves, without --no-serve).
    assert "demo sign-ins" in result.output and "/ops" in result.output and "operations dashboard" in result.output


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = CliRunner().invoke(app, ["demo", "--parties", "100", "--months", "18", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "not made by `fieldbank demo`" in result.output
    assert (tmp_path / "precious.txt").read_text() == "keep me"
