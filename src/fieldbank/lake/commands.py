"""`fieldbank ingest SRC`: the CLI shell around fieldbank.lake.ingest.ingest.

Exit codes: 0 when the run completed (quarantined rows and rejected files are reported as
warnings: the good rows landed and nothing was lost); 1 with --strict when any row was
quarantined or any file rejected; 2 when SRC or the options are unusable, or another ingest holds the lake.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from fieldbank.config import load_settings
from fieldbank.lake import sources
from fieldbank.lake.ingest import DEFAULT_MEMORY_LIMIT, ingest

console = Console()


def _given(value: Any) -> Any:
    """The value of a parameter, also when called from Python without it (then typer's
    OptionInfo/ArgumentInfo object is the default: use its default)."""
    if isinstance(value, typer.models.ParameterInfo):
        return value.default
    return value


def ingest_command(
    src: Path = typer.Argument(
        ..., help="directory of <table>/ folders or <table>.csv|.parquet files, or one file"
    ),
    table: str | None = typer.Option(
        None, help="ingest only this table (required for a single file not named <table>.*)"
    ),
    data_dir: Path | None = typer.Option(
        None, help="root of the lake and quarantine (default: settings)"
    ),
    lake_dir: Path | None = typer.Option(None, help="lake directory (default: DATA_DIR/lake)"),
    quarantine_dir: Path | None = typer.Option(
        None, help="quarantine directory (default: DATA_DIR/quarantine)"
    ),
    strict: bool = typer.Option(
        False, "--strict", help="exit 1 if any row is quarantined or any file rejected"
    ),
    force: bool = typer.Option(
        False, "--force", help="re-read files already ingested (their rows are not landed twice)"
    ),
    now: str | None = typer.Option(
        None, help="latest allowed timestamp, ISO 8601 (default: the current time)"
    ),
    memory_limit: str = typer.Option(
        DEFAULT_MEMORY_LIMIT, help="DuckDB memory limit; beyond it DuckDB spills to disk"
    ),
    threads: int | None = typer.Option(
        None, min=1, max=256, help="DuckDB threads (default: all cores)"
    ),
    max_batch_mb: int = typer.Option(
        sources.DEFAULT_MAX_BATCH_BYTES >> 20,
        min=1,
        max=1 << 20,
        help="source MiB validated as one batch",
    ),
    report_json: Path | None = typer.Option(None, help="also write the full report as JSON here"),
) -> None:
    """Validate raw CSV/Parquet event files and land the good rows in the lake.

    Bad rows go to the quarantine with their reasons; re-ingesting a file adds nothing.
    """
    src = Path(_given(src))
    settings = load_settings(
        data_dir=_given(data_dir), lake_dir=_given(lake_dir), quarantine_dir=_given(quarantine_dir)
    )
    now_text = _given(now)
    try:
        now_at = datetime.fromisoformat(now_text) if now_text else None
    except ValueError:
        console.print(f"[red]--now {now_text!r} is not an ISO 8601 timestamp[/red]")
        raise typer.Exit(2) from None
    if now_at is not None and now_at.tzinfo is None:
        now_at = now_at.replace(tzinfo=timezone.utc)
    try:
        report = ingest(
            src,
            settings,
            table=_given(table),
            now=now_at,
            force=bool(_given(force)),
            memory_limit=str(_given(memory_limit)),
            threads=_given(threads),
            max_batch_bytes=int(_given(max_batch_mb)) << 20,
            console=console,
            show_progress=True,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as exc:  # bad SRC/options, lake locked
        console.print(f"[red]ingest: {exc}[/red]")
        raise typer.Exit(2) from None
    report.render(console)
    if _given(report_json) is not None:
        path = Path(_given(report_json))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report.to_dict(), indent=1) + "\n")
    if not report.clean:
        console.print(
            f"[yellow]warning[/yellow]: {report.rows_quarantined:,} rows quarantined, "
            f"{len(report.files_rejected)} files rejected; see {settings.quarantine_dir}"
        )
        if _given(strict):
            raise typer.Exit(1)
