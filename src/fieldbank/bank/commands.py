"""CLI verbs of the bank core. Register in fieldbank.cli with:

    app.add_typer(bank_app, name="bank")          # fieldbank bank init-db|open-line|draw|repay|...
    app.command("close-day")(close_day_command)   # fieldbank close-day --date D
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
bank_app = typer.Typer(help="The bank core: double-entry ledger, credit lines, loans, reports.",
                       no_args_is_help=True)

DataDir = typer.Option(None, "--data-dir", help="root of fieldbank's files (default ./var)")
DatabaseUrl = typer.Option(None, "--database-url", help="bank database URL (default sqlite:///<data-dir>/bank.db)")


def _service(data_dir: Path | None, database_url: str | None):  # noqa: ANN202
    from fieldbank.bank.db import make_engine, migrate
    from fieldbank.bank.service import BankService
    from fieldbank.config import load_settings

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database_url)
    migrate(engine)
    bank = BankService(engine)
    bank.ensure_products()
    return settings, bank


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


def _fail(err: Exception) -> None:
    console.print(f"[red]rejected[/red]: {err}")
    raise typer.Exit(code=2)


@bank_app.command("init-db")
def init_db_command(data_dir: Path | None = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Create or migrate the bank database (Alembic head) and add the default products."""
    settings, bank = _service(data_dir, database_url)
    from sqlalchemy import text

    with bank.engine.connect() as conn:
        products = conn.execute(text("SELECT product_code, kind, schedule_type, apr_bps, day_count FROM products "
                                     "ORDER BY product_code")).all()
    table = Table(title="products")
    for col in ("product_code", "kind", "schedule", "apr_bps", "day count"):
        table.add_column(col)
    for p in products:
        table.add_row(p[0], p[1], p[2], str(p[3]), p[4])
    console.print(table)
    console.print(f"[green]bank database ready[/green] at {settings.database_url} ({len(products)} products)")


@bank_app.command("open-line")
def open_line_command(
    offer_id: str = typer.Option(..., help="the accepted offer's id (an offer opens once)"),
    party_id: str = typer.Option(..., help="the borrower"),
    product: str = typer.Option("line-revolving", help="product code (see init-db)"),
    amount_minor: int = typer.Option(..., min=1, help="limit (line) or principal (loan), minor units"),
    apr_bps: int | None = typer.Option(None, min=0, help="priced APR from the offer; default the product's"),
    on: str | None = typer.Option(None, help="value date YYYY-MM-DD; default the open business date"),
    key: str | None = typer.Option(None, "--idempotency-key", help="default: open-<offer-id>"),
    data_dir: Path | None = DataDir, database_url: str | None = DatabaseUrl,
) -> None:
    """Open a credit line or an installment loan (disbursed at once) from an accepted offer."""
    from fieldbank.bank.domain import DomainError
    from fieldbank.bank.service import IdempotencyConflict

    _, bank = _service(data_dir, database_url)
    try:
        result = bank.open_line(offer_id=offer_id, party_id=party_id, product_code=product, amount_minor=amount_minor,
                                apr_bps=apr_bps, on=dt.date.fromisoformat(on) if on else None,
                                idempotency_key=key or f"open-{offer_id}")
    except (DomainError, IdempotencyConflict) as err:
        _fail(err)
    console.print(f"[green]opened[/green] loan {result['loan_id']} ({result['kind']}, {_money(amount_minor)}, "
                  f"{result['apr_bps']} bps, matures {result['maturity_on']})")


def _money_op(operation: str, loan_id: int, amount_minor: int, on: str | None, key: str | None,
              data_dir: Path | None, database_url: str | None) -> None:
    from fieldbank.bank.domain import DomainError
    from fieldbank.bank.service import IdempotencyConflict, NotFound

    _, bank = _service(data_dir, database_url)
    key = key or f"cli-{uuid.uuid4()}"
    try:
        result = getattr(bank, operation)(loan_id=loan_id, amount_minor=amount_minor, idempotency_key=key,
                                          on=dt.date.fromisoformat(on) if on else None)
    except (DomainError, IdempotencyConflict, NotFound) as err:
        _fail(err)
    console.print({k: v for k, v in result.items() if v is not None})
    console.print(f"[green]{operation}[/green] {_money(amount_minor)} on loan {loan_id} (idempotency key {key})")


@bank_app.command("draw")
def draw_command(loan_id: int = typer.Option(..., min=1), amount_minor: int = typer.Option(..., min=1),
                 on: str | None = typer.Option(None), key: str | None = typer.Option(None, "--idempotency-key"),
                 data_dir: Path | None = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Draw on a credit line (disbursed to the borrower's payment account through the rail)."""
    _money_op("draw", loan_id, amount_minor, on, key, data_dir, database_url)


@bank_app.command("repay")
def repay_command(loan_id: int = typer.Option(..., min=1), amount_minor: int = typer.Option(..., min=1),
                  prepay: bool = typer.Option(False, "--prepay", help="also pay principal not yet due"),
                  on: str | None = typer.Option(None), key: str | None = typer.Option(None, "--idempotency-key"),
                  data_dir: Path | None = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Record a repayment (fees -> interest -> principal; excess to a credit balance)."""
    _money_op("prepay" if prepay else "repay", loan_id, amount_minor, on, key, data_dir, database_url)


@bank_app.command("trial-balance")
def trial_balance_command(data_dir: Path | None = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Trial balance from the journal, with the replay check of every stored balance."""
    from fieldbank.bank import ledger

    _, bank = _service(data_dir, database_url)
    with bank.engine.connect() as conn:
        rows = ledger.trial_balance(conn)
        check = ledger.check_books(conn)
    table = Table(title="trial balance")
    for col, justify in (("account", "left"), ("kind", "left"), ("debit", "right"), ("credit", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["name"], r["kind"], _money(r["debit_minor"]), _money(r["credit_minor"]))
    table.add_row("[bold]total", "", _money(sum(r["debit_minor"] for r in rows)),
                  _money(sum(r["credit_minor"] for r in rows)))
    console.print(table)
    status = "[green]books balance and match every stored balance[/green]" if check.ok else f"[red]{check}[/red]"
    console.print(status)
    if not check.ok:
        raise typer.Exit(code=1)


@bank_app.command("portfolio")
def portfolio_command(data_dir: Path | None = DataDir, database_url: str | None = DatabaseUrl) -> None:
    """Portfolio snapshot: outstanding by delinquency bucket, allowances, NPL ratio."""
    from fieldbank.bank.reports import portfolio_snapshot

    _, bank = _service(data_dir, database_url)
    with bank.engine.connect() as conn:
        snap = portfolio_snapshot(conn)
    table = Table(title="portfolio by bucket")
    for col in ("bucket", "loans", "outstanding", "allowance rate", "allowance"):
        table.add_column(col, justify="right")
    for b in snap["buckets"]:
        table.add_row(b["bucket"], str(b["loans"]), _money(b["outstanding_minor"]),
                      f"{b['allowance_rate_bps'] / 100:.0f} %", _money(b["allowance_minor"]))
    console.print(table)
    console.print(f"{snap['active_loans']} active loans, outstanding {_money(snap['outstanding_minor'])}, "
                  f"NPL ratio {snap['npl_ratio']:.2%}, written off {_money(snap['written_off_minor'])}")


@bank_app.command("statement")
def statement_command(loan_id: int = typer.Option(..., min=1), data_dir: Path | None = DataDir,
                      database_url: str | None = DatabaseUrl) -> None:
    """A loan's balances, schedule (or statements) and journal lines."""
    from fieldbank.bank.service import NotFound

    _, bank = _service(data_dir, database_url)
    try:
        statement = bank.statement(loan_id)
    except NotFound as err:
        _fail(err)
    loan = statement["loan"]
    console.print(f"[bold]loan {loan_id}[/bold] {loan['product_code']} ({loan['kind']}) party {loan['party_id']} "
                  f"status {loan['status']}, DPD {loan['dpd']} ({loan['bucket']})")
    console.print(f"principal {_money(loan['principal_minor'])}  interest {_money(loan['interest_minor'])}  "
                  f"fees {_money(loan['fees_minor'])}  credit {_money(loan['credit_minor'])}  "
                  f"limit {_money(loan['limit_minor'])}")
    schedule = Table(title="schedule")
    for col in ("#", "due", "principal", "interest", "paid principal", "paid interest"):
        schedule.add_column(col, justify="right")
    for r in bank.schedule(loan_id):
        schedule.add_row(str(r["seq"]), str(r["due_on"]), _money(r["principal_due_minor"]),
                         _money(r["interest_due_minor"]), _money(r["principal_paid_minor"]),
                         _money(r["interest_paid_minor"]))
    console.print(schedule)
    lines = Table(title="journal lines")
    for col in ("date", "entry", "kind", "account", "amount"):
        lines.add_column(col)
    for r in statement["lines"]:
        lines.add_row(str(r["business_date"]), r["entry_id"], r["kind"], r["account_code"], _money(r["amount_minor"]))
    console.print(lines)


def close_day_command(
    date: str | None = typer.Option(None, "--date", help="business date to close (YYYY-MM-DD); default yesterday"),
    data_dir: Path | None = DataDir, database_url: str | None = DatabaseUrl,
    export: bool = typer.Option(True, help="export loan outcomes to the lake's loans table"),
) -> None:
    """Close of business: accrue, bill, delinquency, late fees, write-offs, closings, allowances, export.

    Closes every open date up to --date, in order; a finished date is skipped, a crashed one
    resumes at its first unfinished step.
    """
    from fieldbank.bank.close_day import STEPS, close_days_through

    settings, bank = _service(data_dir, database_url)
    last_day = dt.date.fromisoformat(date) if date else dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    started = time.perf_counter()
    results = []
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task(f"close-day through {last_day}", total=None)

        def on_day(result) -> None:  # noqa: ANN001
            results.append(result)
            progress.update(task, advance=1, description=f"closed {result.business_date}")

        close_days_through(bank.engine, last_day, lake_dir=settings.lake_dir if export else None, on_day=on_day)
    with bank.engine.connect() as conn:
        from fieldbank.bank import ledger

        check = ledger.check_books(conn)
    run = [r for r in results if r.steps_run]
    accrued = sum(r.rows.get("accrue", 0) for r in run)
    written_off = sum(r.rows.get("write_off", 0) for r in run)
    console.print(
        f"[green]close-day[/green]: {len(run)} business date(s) closed through {last_day} "
        f"({len(STEPS)} steps each, {accrued} accrual lines, {written_off} write-offs) in "
        f"{time.perf_counter() - started:.1f} s; books {'balance' if check.ok else 'DO NOT BALANCE'}")
    if not check.ok:
        raise typer.Exit(code=1)
