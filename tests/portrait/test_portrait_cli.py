"""The portrait CLI verbs, driven through typer's test runner."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import typer
from portrait_handmade import AS_OF, assert_same_portrait, hand_tables, write_lake_table
from typer.testing import CliRunner

from fieldbank.portrait.catalog import catalog, markdown
from fieldbank.portrait.commands import features_command, portrait_command

app = typer.Typer()
app.command("portrait")(portrait_command)
app.command("features")(features_command)


@pytest.mark.slow
def test_portrait_command_writes_one_file_per_date(tmp_path: Path) -> None:
    for name, table in hand_tables().items():
        write_lake_table(tmp_path / "lake", name, table)
    result = CliRunner().invoke(
        app, ["portrait", "--as-of", AS_OF.isoformat(), "--as-of", "2025-03-01", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert "2 date(s)" in result.output
    assert "incremental state: built (no state)" in result.output  # the latest date; 2025-03-01 in full
    for day in ("2025-03-01", AS_OF.isoformat()):
        path = tmp_path / "portraits" / f"as_of={day}" / "part-0.parquet"
        table = pq.read_table(path)
        assert table.column_names == ["party_id", "as_of"] + [f.name for f in catalog()]
    assert not [p for p in (tmp_path / "portraits").iterdir() if p.name.startswith(".")]  # no temp left
    incremental = pq.read_table(tmp_path / "portraits" / f"as_of={AS_OF.isoformat()}" / "part-0.parquet")
    # Recomputing replaces the date's directory atomically; --full gives the same values.
    result = CliRunner().invoke(app, ["portrait", "--as-of", AS_OF.isoformat(), "--full", "--data-dir",
                                      str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "incremental state" not in result.output
    full = pq.read_table(tmp_path / "portraits" / f"as_of={AS_OF.isoformat()}" / "part-0.parquet")
    assert_same_portrait(incremental, full, rel=1e-9)
    result = CliRunner().invoke(app, ["portrait", "--as-of", AS_OF.isoformat(), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0 and "incremental state: current" in result.output, result.output


def test_portrait_command_rejects_bad_input(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["portrait", "--as-of", "2025-13-01", "--data-dir", str(tmp_path)])
    assert result.exit_code != 0 and "2025-13-01" in result.output
    result = CliRunner().invoke(app, ["portrait", "--as-of", "2025-06-01", "--engine", "pandas",
                                      "--data-dir", str(tmp_path)])
    assert result.exit_code != 0 and "pandas" in result.output


def test_features_markdown_is_the_committed_doc() -> None:
    result = CliRunner().invoke(app, ["features", "--markdown"])
    assert result.exit_code == 0
    doc = Path(__file__).parents[2] / "docs" / "features.md"
    assert result.output.strip() == doc.read_text().strip() == markdown().strip()
    result = CliRunner().invoke(app, ["features"])
    assert result.exit_code == 0 and f"portrait features ({len(catalog())})" in result.output
