"""The `fieldbank` command line: one verb per stage of the data flow, plus demo.

Each verb is a thin shell: it parses options, loads settings and calls the stage's
package, which owns the work. Stages register their verbs below.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import typer
from rich.console import Console

from fieldbank import contract
from fieldbank.bank.commands import bank_app, close_day_command
from fieldbank.decision.backtest_commands import backtest_command
from fieldbank.lake.commands import ingest_command
from fieldbank.risk.commands import models_app, score_command, train_command
from fieldbank.portrait.commands import features_command, portrait_command, portrait_report_command
from fieldbank.simulate.commands import simulate_command

MAX_SERVE_WORKERS = 8
# uvicorn kills a worker that does not answer its supervisor's ping within this time, starting
# up included (5 s by default): a worker spawned on a busy machine was killed and respawned in a
# loop before it had imported its libraries.
WORKER_HEALTHCHECK_S = 60

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
app.command("train")(train_command)
app.command("score")(score_command)
app.add_typer(models_app, name="models")
app.command("close-day")(close_day_command)
app.add_typer(bank_app, name="bank")
app.command("portrait")(portrait_command)
app.command("features")(features_command)
app.command("portrait-report")(portrait_report_command)
app.command("backtest")(backtest_command)


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port"),
    data_dir: Path = typer.Option(None, help="fieldbank data folder (default var/)"),
    database_url: str = typer.Option(None, help="bank database URL (default sqlite:///<data-dir>/bank.db)"),
    workers: int = typer.Option(1, min=1, max=MAX_SERVE_WORKERS,
                                help="server processes sharing the port; each keeps its own portrait and models "
                                     "in memory. 2 on 2 cores with PostgreSQL; SQLite's single writer favours 1"),
) -> None:
    """Serve the HTTP API (OpenAPI at /docs): the bank core's operations, with Idempotency-Key."""
    import uvicorn

    from fieldbank.api.app import create_app, prepare_database
    from fieldbank.config import load_settings

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    console.print(f"fieldbank API on http://{host}:{port} (OpenAPI: /docs), database {settings.database_url}, "
                  f"{workers} worker(s)")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
        return
    # Several processes (one GIL each): migrate once here, then each worker builds its app from
    # the environment (uvicorn needs an import string to start workers).
    prepare_database(settings).dispose()
    from fieldbank.web.auth import load_secret

    load_secret(settings.data_dir)  # the web session secret, created here so the workers do not race to
    os.environ["FIELDBANK_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    os.environ["FIELDBANK_DATABASE_URL"] = settings.database_url
    uvicorn.run("fieldbank.api.app:app_from_environment", factory=True, workers=workers, host=host, port=port,
                log_level="warning", timeout_worker_healthcheck=WORKER_HEALTHCHECK_S)


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


DEMO_MARKER = ".fieldbank-demo"


def _fresh_demo_dir(data_dir: Path) -> None:
    """Start every demo from scratch (a new economy reuses IDs with other values), but only ever
    wipe a folder an earlier demo made."""
    if data_dir.exists() and any(data_dir.iterdir()):
        if not (data_dir / DEMO_MARKER).exists():
            raise typer.BadParameter(f"{data_dir} is not empty and was not made by `fieldbank demo`; "
                                     "pick another --data-dir", param_hint="--data-dir")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / DEMO_MARKER).write_text("made by `fieldbank demo`; the next demo deletes this folder\n")


@app.command("demo")
def demo_command(
    parties: int = typer.Option(10_000, min=50, max=2_000_000, help="number of parties to simulate"),
    months: int = typer.Option(24, min=18, max=44, help="months of history to simulate (18+: the models "
                               "need labelled dates and an out-of-time gap; the period ends by 2026-09)"),
    seed: int = typer.Option(7, help="random seed; same seed, same economy"),
    borrowers: int = typer.Option(300, min=1, max=5_000, help="parties the demo bank lends to"),
    bank_days: int = typer.Option(240, min=2, max=730, help="business days the demo bank closes"),
    data_dir: Path = typer.Option(Path("var/demo"), help="where the demo writes everything"),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="end by serving the web pages (--no-serve: tests, CI)"),
    port: int = typer.Option(8000, min=1, max=65535, help="port the demo serves on"),
) -> None:
    """The main job end to end on embedded defaults: simulate, ingest, book and service loans, serve."""
    from fieldbank.bank.commands import portfolio_command, trial_balance_command
    from fieldbank.config import load_settings
    from fieldbank.demo import DEMO_HORIZON_DAYS, book_and_service, first_party, portrait_dates
    from fieldbank.risk.commands import models_promote, score_command, train_portraits

    _fresh_demo_dir(data_dir)
    settings = load_settings(data_dir=data_dir)
    console.rule("[bold]1/7 simulate a rural and small-business economy")
    simulate_command(parties=parties, months=months, seed=seed, data_dir=settings.data_dir)
    console.rule("[bold]2/7 ingest it into the lake (validated, partitioned by month)")
    ingest_command(src=settings.raw_dir, data_dir=settings.data_dir)
    console.rule("[bold]3/7 draw every party's portrait from the lake (point in time)")
    latest, labelled = portrait_dates(settings)
    dates = [d.isoformat() for d in (labelled, latest) if d is not None]
    portrait_command(as_of=dates, engine="duckdb", data_dir=settings.data_dir, rollups=True, incremental=False)
    if labelled is not None:
        portrait_report_command(as_of=labelled.isoformat(), horizon_days=365, data_dir=settings.data_dir)
    console.rule("[bold]4/7 train credit models on the portraits: traditional vs alternative data")
    # A 24-month economy leaves room for a 180-day label with a proper out-of-time gap;
    # the 12-month label needs about 30 months (docs/risk.md).
    train_portraits(settings, [], "portrait", seed, DEMO_HORIZON_DAYS, "open_at_d", None)
    models_promote(name="portrait", version=None, data_dir=settings.data_dir)
    score_command(party_id=first_party(settings, latest), as_of=None, name=None, version=None,
                  data_dir=settings.data_dir)
    console.rule("[bold]5/7 book loans on the double-entry ledger and close every business day")
    report = book_and_service(settings, borrowers=borrowers, days=bank_days, seed=seed, console=console)
    console.print(f"decisions on {sum(report.decisions.values())} applications: {report.decisions}")
    console.print(f"lent to {report.borrowers} parties on {report.first_day} (habits: {report.habits}); "
                  f"closed {report.first_day} .. {report.last_day}")
    trial_balance_command(data_dir=settings.data_dir, database_url=settings.database_url)
    portfolio_command(data_dir=settings.data_dir, database_url=settings.database_url)
    console.rule("[bold]6/7 backtest: a candidate policy vs the champion, portrait vs traditional data, on every party")
    from fieldbank.config import REPO_POLICIES_DIR

    backtest_command(policy=REPO_POLICIES_DIR / "candidate_tight_cutoff.json", champion_policy=None, as_of=None,
                     target_bad_rate=0.02, bootstrap=200, term_days=365, amount_minor=None, out=None,
                     data_dir=settings.data_dir)
    console.print(f"[green]demo done[/green]: lake {settings.lake_dir}, ground truth {settings.truth_dir}, "
                  f"bank database {settings.database_url}; loan outcomes exported to {settings.lake_dir / 'loans'}")
    from fieldbank.web.demo_step import serve_demo

    console.rule("[bold]7/7 web: the borrower pages and the operations dashboard")
    serve_demo(settings, console, port=port, serve=serve)


if __name__ == "__main__":
    app()
