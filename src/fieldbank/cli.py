"""The `fieldbank` command line: one verb per stage of the data flow, plus demo.

Each verb is a thin shell: it parses options, loads settings and calls the stage's
package, which owns the work. Stages register their verbs below.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from fieldbank import contract
from fieldbank.lake.commands import ingest_command
from fieldbank.portrait.commands import features_command, portrait_command, portrait_report_command
from fieldbank.simulate.commands import simulate_command

app = typer.Typer(
    name="fieldbank",
    help="Lend on data instead of collateral: simulate, ingest, portrait, score, decide, book, service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()

app.command("simulate")(simulate_command)
app.command("ingest")(ingest_command)
app.command("portrait")(portrait_command)
app.command("features")(features_command)
app.command("portrait-report")(portrait_report_command)


@app.command("contract")
def contract_command(
    markdown: bool = typer.Option(False, "--markdown", help="print docs/data-contract.md"),
) -> None:
    """Print the data contract (the event tables' schemas)."""
    if markdown:
        typer.echo(contract.markdown())
        return
    from rich.table import Table as RichTable

    for name in contract.TABLE_ORDER:
        t = contract.TABLES[name]
        rt = RichTable(title=f"{t.name} (key {t.primary_key}, partitioned by {t.time_column})")
        for col in ("column", "type", "unit", "rules"):
            rt.add_column(col)
        for c in t.columns:
            rt.add_row(c.name, str(c.type), c.unit, "; ".join(c.rules()))
        console.print(rt)


@app.command("demo")
def demo_command(
    parties: int = typer.Option(3000, min=50, max=2_000_000, help="number of parties to simulate"),
    months: int = typer.Option(24, min=1, max=120, help="months of history to simulate"),
    seed: int = typer.Option(7, help="random seed; same seed, same economy"),
    data_dir: Path = typer.Option(Path("var/demo"), help="where the demo writes everything"),
) -> None:
    """The main job end to end on embedded defaults: simulate an economy, ingest it into the lake."""
    from fieldbank.config import load_settings

    settings = load_settings(data_dir=data_dir)
    console.rule("[bold]1/2 simulate a rural and small-business economy")
    simulate_command(parties=parties, months=months, seed=seed, data_dir=settings.data_dir)
    console.rule("[bold]2/2 ingest it into the lake (validated, partitioned by month)")
    ingest_command(src=settings.raw_dir, data_dir=settings.data_dir)
    console.print(f"[green]demo done[/green]: lake at {settings.lake_dir}, ground truth at {settings.truth_dir}")


if __name__ == "__main__":
    app()
