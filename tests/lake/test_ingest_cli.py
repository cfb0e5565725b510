"""`fieldbank ingest` as a command, and as the plain function `fieldbank demo` calls."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from lake_data import ROWS, write_csv, write_valid_raw
from typer.testing import CliRunner

from fieldbank import contract
from fieldbank.config import load_settings
from fieldbank.lake.commands import ingest_command
from fieldbank.lake.read import read_lake_table

app = typer.Typer()
app.command("ingest")(ingest_command)


@app.callback()
def main() -> None:
    """Group mode, as in fieldbank.cli."""


def test_cli_ingest_prints_the_table_and_strict_fails_on_quarantine(tmp_path: Path) -> None:
    raw = write_valid_raw(tmp_path / "raw", "csv")
    runner = CliRunner()
    result = runner.invoke(
        app, ["ingest", str(raw), "--data-dir", str(tmp_path / "var"), "--now", "2025-01-01"]
    )
    assert result.exit_code == 0, result.output
    assert "rows per table" in result.output and "21 rows read = 21 landed" in result.output
    bad = [dict(r, txn_id="z" + r["txn_id"]) for r in ROWS["payments"]()]
    bad[2]["amount_minor"] = "-1"
    write_csv(tmp_path / "bad" / "payments.csv", bad, contract.PAYMENTS.column_names)
    args = [
        "ingest",
        str(tmp_path / "bad"),
        "--data-dir",
        str(tmp_path / "var"),
        "--now",
        "2025-01-01",
    ]
    result = runner.invoke(app, [*args, "--strict", "--report-json", str(tmp_path / "report.json")])
    assert result.exit_code == 1, result.output
    saved = json.loads((tmp_path / "report.json").read_text())
    assert (
        saved["rows_read"],
        saved["rows_landed"],
        saved["rows_quarantined"],
        saved["clean"],
    ) == (8, 7, 1, False)
    assert saved["tables"][0]["examples"][0]["rule"] == "min_value"
    assert "min_value" in result.output and "row 3" in result.output and "'-1'" in result.output
    result = runner.invoke(app, args)  # already ingested: nothing read, exit 0
    assert result.exit_code == 0 and "1 already ingested" in result.output
    result = runner.invoke(
        app, ["ingest", str(tmp_path / "nope"), "--data-dir", str(tmp_path / "var")]
    )
    assert result.exit_code == 2


def test_called_from_python_like_demo(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "var")
    write_valid_raw(settings.raw_dir)
    ingest_command(src=settings.raw_dir, data_dir=settings.data_dir)
    for name in contract.TABLE_ORDER:
        assert read_lake_table(settings.lake_dir, name).num_rows == len(ROWS[name]())
