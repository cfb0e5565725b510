"""`fieldbank demo`: the main job end to end on embedded defaults, one step per stage.

1. simulate an economy            -> raw/, truth/
2. ingest it into the lake        -> lake/, quarantine/
3. draw portraits                 -> portraits/as_of=.../, reports/feature_quality_*.html
4. train, register, promote, score -> models/portrait/<version>/ (+ report.html)
5. book and service loans         -> bank.db (SQLite), outcomes back to lake/loans

Step 5 lends through the decision service: a sample of the simulated parties applies
(`DecisionService.apply`, the champion model on the latest portrait, the policy, limit and
price), approved offers are accepted and booked with the decision's limit and APR. Each borrower gets a
repayment habit (pays on time, pays every other month, stops paying), so the nightly
close-day has real work: interest, billing, delinquency buckets, late fees, write-offs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import select

from fieldbank.config import Settings
from fieldbank.lake.read import payment_days, read_lake_table

MAX_DEMO_BORROWERS = 5_000
DEMO_HORIZON_DAYS = 180  # label: 90+ DPD within 180 days (a 365-day label needs ~30 months of data)
HABITS = ("on_time", "every_other_month", "stops_paying")
HABIT_SHARES = (0.80, 0.14, 0.06)
# product per party kind and the amount applied for (minor units); the decision sets the limit and APR
PRODUCT_BY_KIND = {"household": ("annuity-12m", 500_000), "business": ("equal-principal-6m", 2_000_000)}
TERM_DAYS_BY_PRODUCT = {"annuity-12m": 365, "equal-principal-6m": 182}


@dataclass(frozen=True)
class BankDemoReport:
    borrowers: int
    first_day: dt.date
    last_day: dt.date
    habits: dict[str, int]
    portfolio: dict
    books_ok: bool
    decisions: dict[str, int]  # applications by outcome (approve / decline / refer)


def payment_span(settings: Settings) -> tuple[dt.date, dt.date]:
    """Days of the first and the last payment in the lake."""
    return payment_days(settings.lake_dir)


def first_bank_day(settings: Settings) -> dt.date:
    """The bank opens the day after the last simulated payment."""
    return payment_span(settings)[1] + dt.timedelta(days=1)


def portrait_dates(settings: Settings) -> tuple[dt.date, dt.date | None]:
    """The latest portrait (the month start after the data ends: what a decision would use
    today) and, when there are 12 months of outcomes after it, the month start a year
    earlier, whose features can be judged against the 12-month default label."""
    first_day, last_day = payment_span(settings)
    latest = (last_day + dt.timedelta(days=1)).replace(day=1)
    labelled = latest.replace(year=latest.year - 1)
    return latest, (labelled if labelled > first_day else None)


def first_party(settings: Settings, as_of: dt.date) -> str:
    """A party to show a score and its reasons for: the first business in the latest portrait."""
    import pyarrow.parquet as pq

    from fieldbank.portrait.pipeline import portrait_path

    portrait = pq.read_table(portrait_path(settings.data_dir, as_of), columns=["party_id", "party_kind"])
    businesses = [p for p, k in zip(portrait["party_id"].to_pylist(), portrait["party_kind"].to_pylist())
                  if k == "business"]
    return min(businesses or portrait["party_id"].to_pylist())


def book_and_service(settings: Settings, *, borrowers: int = 300, days: int = 210, seed: int = 7,
                     console: Console | None = None) -> BankDemoReport:
    """Open loans for a seeded sample of parties, then close `days` business days with repayments."""
    from fieldbank.bank.close_day import close_days_through
    from fieldbank.api.app import prepare_database
    from fieldbank.bank.ledger import check_books
    from fieldbank.bank.reports import portfolio_snapshot
    from fieldbank.bank.service import LOANS, BankService, owed_components
    from fieldbank.decision.schemas import ApplicationIn
    from fieldbank.decision.service import DecisionService

    assert 1 <= borrowers <= MAX_DEMO_BORROWERS, borrowers
    console = console or Console()
    rng = np.random.default_rng(seed)
    parties = read_lake_table(settings.lake_dir, "parties", ["party_id", "kind"]).to_pylist()
    chosen = sorted(rng.choice(len(parties), size=min(borrowers, len(parties)), replace=False))
    habits = rng.choice(len(HABITS), size=len(chosen), p=HABIT_SHARES)

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = prepare_database(settings)
    bank = BankService(engine)
    first_day = first_bank_day(settings)
    loan_habit: dict[int, int] = {}
    decisions = DecisionService(engine, settings, bank)
    outcomes = {"approve": 0, "decline": 0, "refer": 0}
    for i, habit in zip(chosen, habits):
        party = parties[i]
        product, amount_minor = PRODUCT_BY_KIND[party["kind"]]
        decision = decisions.apply(ApplicationIn(
            party_id=party["party_id"], consent=True, requested_amount_minor=amount_minor,
            term_days=TERM_DAYS_BY_PRODUCT[product], purpose="working_capital", product_code=product),
            f"demo-apply-{party['party_id']}")
        outcomes[decision.outcome] += 1
        if decision.outcome == "approve":
            accepted = decisions.accept(decision.decision_id, f"demo-accept-{party['party_id']}", on=first_day)
            loan_habit[accepted.loan_id] = int(habit)
    decisions.close()
    habits = np.array([h for h in loan_habit.values()], dtype=np.int64)

    last_day = first_day + dt.timedelta(days=days - 1)
    month_ends = sorted({first_day + dt.timedelta(days=d) for d in range(29, days, 30)} | {last_day})
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("close-day, with repayments at each month end", total=days)
        for month, month_end in enumerate(month_ends):
            close_days_through(engine, month_end - dt.timedelta(days=1),
                               on_day=lambda _r: bar.advance(task))
            with engine.connect() as conn:
                loans = conn.execute(select(LOANS).where(LOANS.c.status == "active")).all()
                owed = {loan.loan_id: sum(owed_components(conn, loan, month_end).values()) for loan in loans}
            for loan_id, amount_minor in owed.items():
                habit = HABITS[loan_habit[loan_id]]
                pays = habit == "on_time" or (habit == "every_other_month" and month % 2 == 1)
                if pays and amount_minor > 0:
                    bank.repay(loan_id=loan_id, amount_minor=amount_minor, on=month_end,
                               idempotency_key=f"demo-repay-{loan_id}-{month}")
            # The last close exports every loan's outcome to the lake's loans table.
            close_days_through(engine, month_end, lake_dir=settings.lake_dir if month_end == last_day else None,
                               on_day=lambda _r: bar.advance(task))
    with engine.connect() as conn:
        portfolio = portfolio_snapshot(conn)
        books_ok = check_books(conn).ok
    engine.dispose()
    counts = {h: int((habits == k).sum()) for k, h in enumerate(HABITS)}
    return BankDemoReport(len(loan_habit), first_day, last_day, counts, portfolio, books_ok, outcomes)
