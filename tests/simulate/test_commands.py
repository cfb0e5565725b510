"""The CLI verb, as the CLI and as `fieldbank demo` call it."""

from __future__ import annotations

import json

import typer
from typer.testing import CliRunner

from fieldbank.simulate.commands import simulate_command


def test_called_directly_with_only_some_arguments(tmp_path):
    # `fieldbank demo` calls it like this: the other options must get their defaults
    report = simulate_command(parties=150, months=2, seed=4, data_dir=tmp_path)
    assert report.rows["parties"] == 150
    summary = json.loads((tmp_path / "truth" / "summary.json").read_text())
    assert summary["params"]["seed"] == 4 and summary["rows"] == report.rows
    assert {"default_rate_past_loans", "credit_history_share", "auc_traditional_logit", "auc_true_pd"} <= set(
        summary["realism"])
    assert (tmp_path / "raw" / "payments" / "part-00000.parquet").exists()


def test_the_cli_verb_prints_the_realism_table(tmp_path):
    app = typer.Typer()
    app.command("simulate")(simulate_command)
    app.command("noop")(lambda: None)  # two commands, so typer keeps the verb name
    result = CliRunner().invoke(app, ["simulate", "--parties", "120", "--months", "2", "--seed", "9",
                                      "--data-dir", str(tmp_path), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "realism of the simulated economy" in result.output
    assert "simulated 120 parties x 2 months" in result.output


def test_a_period_in_the_future_is_refused(tmp_path):
    app = typer.Typer()
    app.command("simulate")(simulate_command)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(app, ["simulate", "--parties", "100", "--months", "12", "--start", "2026-06-01",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "2026-06-01" in result.output and "past" in result.output
