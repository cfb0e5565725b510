"""CLI verbs of the portrait stage: `fieldbank portrait`, `fieldbank features`,
`fieldbank portrait-report` (thin shells: parse, load settings, call the package)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


def portrait_command(
    as_of: list[str] = typer.Option(..., "--as-of", help="portrait date YYYY-MM-DD (repeat for a backfill)"),
    engine: str = typer.Option(None, "--engine", help="duckdb (default) or spark; default from settings"),
    data_dir: Path = typer.Option(None, help="root of fieldbank's files; default from settings"),
    rollups: bool = typer.Option(True, "--rollups/--no-rollups",
                                 help="read payments through the incremental daily rollups (default) or raw"),
    incremental: bool = typer.Option(True, "--incremental/--full",
                                     help="DuckDB with rollups: the latest date from the running totals kept in "
                                          "the lake (advanced by the new days), earlier dates in full"),
) -> None:
    """Compute portraits (one row per party, one column per feature) as of each date."""
    from fieldbank.config import load_settings
    from fieldbank.portrait.catalog import catalog
    from fieldbank.portrait.engine import ENGINES, connect
    from fieldbank.portrait.inputs import load_inputs
    from fieldbank.portrait.pipeline import execute_portrait, parse_as_of, write_portrait

    settings = load_settings(data_dir=data_dir)
    engine = engine or settings.engine
    if engine not in ENGINES:
        raise typer.BadParameter(f"--engine {engine!r}: must be one of {', '.join(ENGINES)}")
    try:
        days = parse_as_of(as_of)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    lake_dir = settings.lake_dir
    assert lake_dir is not None
    if not (lake_dir / "parties").exists():
        raise typer.BadParameter(f"no lake at {lake_dir} (no parties table): run `fieldbank ingest` first")

    use_state = incremental and rollups and engine == "duckdb"
    started = time.perf_counter()
    rows = 0
    spark = None
    with _progress() as progress:
        task = progress.add_task("rollups + lake", total=len(days) + 1)
        if engine == "spark":
            from fieldbank.portrait.engine import spark_session

            spark = spark_session()
        con = connect(engine, spark=spark)
        inp = load_inputs(con, lake_dir, use_rollups=rollups)
        progress.advance(task)
        for day in days:
            progress.update(task, description=f"portrait as of {day}")
            if use_state and day == days[-1]:
                from fieldbank.portrait.state import latest_portrait

                table, update = latest_portrait(lake_dir, day)
                console.print(f"incremental state: {update.action}"
                              + (f" ({update.reason})" if update.action == "built" else "")
                              + (f", {update.days} day(s) from {update.from_as_of}" if update.days else "")
                              + (f"; bills: {update.bills}" if update.bills else ""))
            else:
                table = execute_portrait(inp, day)
            write_portrait(settings.data_dir, day, table)
            rows += table.num_rows
            progress.advance(task)
    if spark is not None:
        spark.stop()
    seconds = time.perf_counter() - started
    console.print(
        f"[green]portrait[/green]: {len(days)} date(s), {rows:,} rows x {len(catalog())} features "
        f"on {engine} in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s) -> "
        f"{settings.data_dir / 'portraits'}"
    )


def features_command(
    markdown: bool = typer.Option(False, "--markdown", help="print docs/features.md"),
) -> None:
    """Print the feature catalog."""
    from rich.table import Table as RichTable

    from fieldbank.portrait.catalog import catalog
    from fieldbank.portrait.catalog import markdown as catalog_markdown

    if markdown:
        typer.echo(catalog_markdown())
        return
    feats = catalog()
    table = RichTable(title=f"portrait features ({len(feats)})")
    table.add_column("feature", no_wrap=True)
    for col in ("family", "window", "unit", "meaning"):
        table.add_column(col)
    for f in feats:
        table.add_row(f.name, f.family, f"{f.window_days} d" if f.window_days else "-", f.unit, f.description)
    console.print(table)


def portrait_report_command(
    as_of: str = typer.Option(..., "--as-of", help="portrait date YYYY-MM-DD"),
    horizon_days: int = typer.Option(365, min=1, max=3660, help="label: 90+ DPD within this many days from D"),
    data_dir: Path = typer.Option(None, help="root of fieldbank's files; default from settings"),
) -> None:
    """Feature quality (coverage, IV, AUC vs the default label) as an HTML table."""
    import os

    import pyarrow.parquet as pq
    from rich.table import Table as RichTable

    from fieldbank.config import load_settings
    from fieldbank.portrait.engine import connect
    from fieldbank.portrait.inputs import load_inputs
    from fieldbank.portrait.pipeline import execute_portrait, parse_as_of, portrait_path, write_portrait
    from fieldbank.portrait.report import feature_quality, labels, render_html, report_path

    settings = load_settings(data_dir=data_dir)
    try:
        (day,) = parse_as_of([as_of])
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    assert settings.lake_dir is not None
    started = time.perf_counter()
    path = portrait_path(settings.data_dir, day)
    with _progress() as progress:
        task = progress.add_task("portrait", total=3)
        if path.exists():
            portrait = pq.read_table(path)
        else:
            portrait = execute_portrait(load_inputs(connect("duckdb"), settings.lake_dir), day)
            write_portrait(settings.data_dir, day, portrait)
        progress.advance(task)
        progress.update(task, description="labels")
        label_table, observed = labels(settings.lake_dir, day, horizon_days)
        progress.advance(task)
        progress.update(task, description="IV and AUC")
        rows = feature_quality(portrait, label_table)
        progress.advance(task)
    out = report_path(settings.data_dir, day)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(render_html(rows, day, portrait.num_rows, label_table, observed, horizon_days))
    os.replace(tmp, out)

    top = RichTable(title=f"strongest features as of {day}")
    for col in ("feature", "coverage", "IV", "AUC"):
        top.add_column(col, no_wrap=True)
    for q in rows[:10]:
        top.add_row(q.name, f"{q.coverage:.0%}", "" if q.iv is None else f"{q.iv:.3f}",
                    "" if q.auc is None else f"{q.auc:.3f}")
    console.print(top)
    bad = int(sum(label_table["label"].to_pylist())) if label_table.num_rows else 0
    console.print(
        f"[green]portrait-report[/green]: {len(rows)} features, {portrait.num_rows:,} parties, "
        f"{label_table.num_rows:,} labeled ({bad:,} defaults){'' if observed else ', labels censored'} "
        f"in {time.perf_counter() - started:.1f} s -> {out}"
    )
