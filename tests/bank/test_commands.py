"""The bank's CLI verbs end to end on a SQLite file (typer's CliRunner)."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from fieldbank.bank.commands import bank_app, close_day_command
from fieldbank.lake.read import lake_files


def test_cli_open_draw_close_report(tmp_path) -> None:  # noqa: ANN001
    app = typer.Typer()
    app.add_typer(bank_app, name="bank")
    app.command("close-day")(close_day_command)
    runner = CliRunner()
    common = ["--data-dir", str(tmp_path)]

    def run(*args: str):  # noqa: ANN202
        result = runner.invoke(app, [*args, *common])
        assert result.exit_code == 0, result.output
        return result.output

    assert "bank database ready" in run("bank", "init-db")
    assert "opened loan 1" in run("bank", "open-line", "--offer-id", "o1", "--party-id", "p1",
                                  "--amount-minor", "100000", "--on", "2026-01-01")
    assert "draw" in run("bank", "draw", "--loan-id", "1", "--amount-minor", "40000", "--on", "2026-01-01")
    assert "3 business date(s) closed" in run("close-day", "--date", "2026-01-04")
    assert "books balance" in run("bank", "trial-balance")
    assert "NPL ratio 0.00%" in run("bank", "portfolio")
    assert "LOANS_PRINCIPAL" in run("bank", "statement", "--loan-id", "1")
    assert [f.parent.name for f in lake_files(tmp_path / "lake", "loans")] == ["month=2026-01"]
    over = runner.invoke(app, ["bank", "draw", "--loan-id", "1", "--amount-minor", "70000", *common])
    assert over.exit_code == 2 and "amount_minor=70000" in over.output
