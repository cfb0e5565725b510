"""Close of business for one business date: set-based SQL over the whole book.

Steps, each one transaction that commits together with its record in close_day_steps, so a
run killed anywhere resumes at the first unrecorded step and ends with the same books as a
clean run (and a rerun of a finished date does nothing):

  accrue        interest for the day on every active line/loan (revolving: on the drawn
                balance; installment: the current period's scheduled interest, spread
                linearly), penalty interest on overdue principal; remainders carried
  bill          revolving lines on their cycle day: a statement (interest + minimum payment)
  apply_credit  credit balances pay what fell due (only loans with both: a small set)
  delinquency   overdue principal, DPD, max DPD, bucket, default date
  late_fees     one late fee per installment unpaid after the product's grace days
  write_off     loans at 180+ DPD: principal, interest and fees to write-off expense
  close_matured credit lines past maturity with nothing owed are closed
  allowance     loss allowance per bucket = exposure x bucket rate; post the change
  export        loan outcomes to the lake's loans table (Parquet, contract schema)

No step loops over loans in Python except apply_credit, whose set is bounded by the loans
holding a credit balance and owing something at the same time.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sqlalchemy import Connection, Engine, insert, select, text, update

from fieldbank.bank import domain, ledger
from fieldbank.bank.models import AllowanceBalance, CloseDayRun, CloseDayStep, Loan
from fieldbank.bank.service import apply_payment

STEPS = ("accrue", "bill", "apply_credit", "delinquency", "late_fees", "write_off", "close_matured", "allowance",
         "export")
MAX_CATCH_UP_DAYS = 366  # close-day closes missing days in order, at most this many per call
MAX_CREDIT_APPLICATIONS_PER_DAY = 1_000_000
PG_CLOSE_DAY_WORK_MEM = "128MB"


class SimulatedCrash(RuntimeError):
    """Raised by the test hook to kill a run at a chosen point."""


class CloseDayError(RuntimeError):
    pass


class _Sql:
    """The few expressions that differ between SQLite and PostgreSQL."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"

    def d(self, name: str) -> str:  # a bound date parameter
        return f"CAST(:{name} AS DATE)" if self.pg else f":{name}"

    def days(self, a: str, b: str) -> str:  # whole days from b to a
        return f"({a} - {b})" if self.pg else f"CAST(julianday({a}) - julianday({b}) AS INTEGER)"

    def add_days(self, a: str, n: str) -> str:
        return f"({a} + {n})" if self.pg else f"date({a}, '+' || ({n}) || ' days')"

    def date_value(self, day: dt.date) -> object:
        return day if self.pg else day.isoformat()


@dataclass
class CloseDayResult:
    business_date: dt.date
    steps_run: list[str] = field(default_factory=list)
    steps_skipped: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    export_path: Path | None = None


def _post_batch_header(conn: Connection, sql: _Sql, entry_id: str, day: dt.date, kind: str, memo: str) -> int:
    """Header last: the database checks the batch entry balances (see ledger.py)."""
    n = conn.execute(text("SELECT count(*) FROM journal_lines WHERE entry_id = :e"), {"e": entry_id}).scalar_one()
    if n == 0:
        return 0
    assert n >= 2, f"{entry_id}: a batch entry needs a balancing line"
    conn.execute(
        text("INSERT INTO journal_entries (entry_id, business_date, kind, loan_id, line_count, reverses_entry_id, memo) "
             f"VALUES (:e, {sql.d('d')}, :k, NULL, :n, NULL, :m)"),
        {"e": entry_id, "d": sql.date_value(day), "k": kind, "n": n, "m": memo},
    )
    return n


def _balance_batch(conn: Connection, entry_id: str, account_code: str) -> None:
    conn.execute(
        text("INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
             "SELECT CAST(:e AS VARCHAR(120)), 0, CAST(:a AS VARCHAR(40)), NULL, -sum(amount_minor) FROM journal_lines WHERE entry_id = :e "
             "HAVING count(*) > 0 AND sum(amount_minor) <> 0"),
        {"e": entry_id, "a": account_code},
    )


# ---- steps -----------------------------------------------------------------------------------


def step_accrue(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    p = {"d": sql.date_value(day), "w30": domain.day_weight("30/360", day),
         "d_end": sql.date_value(day + dt.timedelta(days=domain.MAX_PERIOD_DAYS)),
         "e": f"close:{day}:interest", "pe": f"close:{day}:penalty"}
    weight = "(CASE day_count WHEN '30/360' THEN :w30 ELSE 1 END)"
    denom = f"(CASE day_count WHEN 'ACT/365' THEN {domain.BPS_PER_UNIT * 365} ELSE {domain.BPS_PER_UNIT * 360} END)"
    revolving_total = f"(interest_carry + principal_minor * apr_bps * {weight})"
    accruing_revolving = f"status = 'active' AND kind = 'revolving' AND opened_on < {sql.d('d')}"
    # Revolving lines: interest on the drawn balance, carried remainder.
    revolving_update = (
        f"UPDATE loans SET last_accrual_minor = {revolving_total} / {denom}, "
        f"interest_minor = interest_minor + {revolving_total} / {denom}, "
        f"interest_carry = {revolving_total} % {denom} "
        f"WHERE {accruing_revolving} AND principal_minor > 0")
    # Installment loans: the current period's scheduled interest spread over its days:
    # accrued through D = interest x elapsed days // period days, so the period sums exactly.
    # Monthly periods are contiguous, so a loan has one current period: line_no = loan_id
    # (the primary key would reject a second one loudly).
    target = (f"(i.interest_due_minor * {sql.days(sql.d('d'), 'i.start_on')} "
              f"/ {sql.days('i.due_on', 'i.start_on')})")
    current = (f"i.due_on >= {sql.d('d')} AND i.due_on <= {sql.d('d_end')} AND i.start_on < {sql.d('d')}")
    lines_insert = "INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
    if sql.pg:
        # One pass per table: each UPDATE returns the day's accrual, which feeds the lines
        # (and, for installments, the loan's balance) in the same statement.
        conn.execute(text(
            f"WITH accrued AS ({revolving_update} RETURNING loan_id, last_accrual_minor) {lines_insert}"
            "SELECT CAST(:e AS VARCHAR(120)), loan_id, 'INTEREST_RECEIVABLE', loan_id, last_accrual_minor "
            "FROM accrued WHERE last_accrual_minor > 0"), p)
        conn.execute(text(
            "WITH accrued AS (UPDATE installments AS i SET last_accrual_minor = "
            f"{target} - i.interest_accrued_minor, interest_accrued_minor = {target} FROM loans l "
            f"WHERE l.loan_id = i.loan_id AND l.status = 'active' AND l.kind = 'installment' AND {current} "
            f"AND {target} > i.interest_accrued_minor RETURNING i.loan_id, i.last_accrual_minor), "
            f"posted AS ({lines_insert}SELECT CAST(:e AS VARCHAR(120)), loan_id, 'INTEREST_RECEIVABLE', loan_id, "
            "last_accrual_minor FROM accrued RETURNING loan_id, amount_minor) "
            "UPDATE loans SET interest_minor = loans.interest_minor + posted.amount_minor FROM posted "
            "WHERE posted.loan_id = loans.loan_id"), p)
    else:  # SQLite has no data-modifying CTEs: lines first (from the old state), then updates
        conn.execute(text(
            f"{lines_insert}SELECT CAST(:e AS VARCHAR(120)), loan_id, 'INTEREST_RECEIVABLE', loan_id, "
            f"{revolving_total} / {denom} FROM loans WHERE {accruing_revolving} AND {revolving_total} / {denom} > 0"), p)
        conn.execute(text(revolving_update), p)
        conn.execute(text(
            f"{lines_insert}SELECT CAST(:e AS VARCHAR(120)), i.loan_id, 'INTEREST_RECEIVABLE', i.loan_id, "
            f"{target} - i.interest_accrued_minor FROM installments i JOIN loans l ON l.loan_id = i.loan_id "
            f"WHERE {current} AND l.status = 'active' AND l.kind = 'installment' "
            f"AND {target} - i.interest_accrued_minor > 0"), p)
        conn.execute(text(
            "UPDATE loans SET interest_minor = loans.interest_minor + jl.amount_minor FROM journal_lines jl "
            "WHERE jl.entry_id = :e AND jl.loan_id = loans.loan_id AND loans.kind = 'installment'"), p)
        conn.execute(text(
            f"UPDATE installments SET interest_accrued_minor = {target.replace('i.', '')} "
            f"WHERE {current.replace('i.', '')} AND loan_id IN "
            "(SELECT loan_id FROM loans WHERE status = 'active' AND kind = 'installment')"), p)
    _balance_batch(conn, p["e"], ledger.INTEREST_INCOME)
    n = _post_batch_header(conn, sql, p["e"], day, "accrual", "daily interest accrual")
    # Penalty interest on overdue principal (both kinds), booked as a fee component.
    penalty_total = f"(penalty_carry + overdue_principal_minor * penalty_bps * {weight})"
    penalised = f"status = 'active' AND overdue_principal_minor > 0 AND penalty_bps > 0"
    conn.execute(text(
        "INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
        f"SELECT CAST(:pe AS VARCHAR(120)), loan_id, 'FEES_RECEIVABLE', loan_id, {penalty_total} / {denom} FROM loans "
        f"WHERE {penalised} AND {penalty_total} / {denom} > 0"), p)
    conn.execute(text(
        f"UPDATE loans SET fees_minor = fees_minor + {penalty_total} / {denom}, "
        f"penalty_carry = {penalty_total} % {denom} WHERE {penalised}"), p)
    _balance_batch(conn, p["pe"], ledger.FEE_INCOME)
    return n + _post_batch_header(conn, sql, p["pe"], day, "penalty_accrual", "penalty interest on overdue principal")


def step_bill(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    p = {"d": sql.date_value(day)}
    min_payment = "((principal_minor * min_payment_bps + 9999) / 10000)"
    billable = f"(CASE WHEN {min_payment} < principal_minor THEN {min_payment} ELSE principal_minor END)"
    principal_part = (f"(CASE WHEN maturity_on <= {sql.d('d')} THEN principal_minor - billed_principal_minor "
                      f"WHEN {billable} > billed_principal_minor THEN {billable} - billed_principal_minor ELSE 0 END)")
    interest_part = "(interest_minor - billed_interest_minor)"
    elapsed = sql.days(sql.d("d"), "opened_on")
    n = conn.execute(text(
        "INSERT INTO installments (loan_id, seq, start_on, due_on, principal_due_minor, interest_due_minor, "
        "interest_accrued_minor, principal_paid_minor, interest_paid_minor, late_fee_charged) "
        f"SELECT loan_id, {elapsed}, {sql.d('d')}, {sql.add_days(sql.d('d'), 'payment_due_days')}, "
        f"{principal_part}, {interest_part}, {interest_part}, 0, 0, FALSE FROM loans "
        f"WHERE status = 'active' AND kind = 'revolving' AND opened_on < {sql.d('d')} "
        f"AND ({elapsed} % cycle_days = 0 OR maturity_on = {sql.d('d')}) "
        f"AND {principal_part} + {interest_part} > 0"), p).rowcount
    conn.execute(text(
        "UPDATE loans SET billed_interest_minor = loans.billed_interest_minor + i.interest_due_minor, "
        "billed_principal_minor = loans.billed_principal_minor + i.principal_due_minor, "
        "oldest_unpaid_due_on = COALESCE(loans.oldest_unpaid_due_on, i.due_on) FROM installments i "
        f"WHERE i.start_on = {sql.d('d')} AND i.loan_id = loans.loan_id AND loans.kind = 'revolving' "
        f"AND i.seq = {sql.days(sql.d('d'), 'loans.opened_on')}"), p)
    return n


def step_apply_credit(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    loans = conn.execute(
        select(Loan.__table__).where(
            Loan.status == "active", Loan.credit_minor > 0,
            (Loan.fees_minor > 0) | (Loan.oldest_unpaid_due_on <= day) | ((Loan.kind == "revolving") & (
                (Loan.principal_minor > 0) | (Loan.interest_minor > 0))),
        ).order_by(Loan.loan_id).limit(MAX_CREDIT_APPLICATIONS_PER_DAY)
    ).all()
    applied = 0
    for loan in loans:
        result = apply_payment(conn, loan, loan.credit_minor, day, entry_id=f"close:{day}:credit:{loan.loan_id}",
                               kind="credit_applied", debit_account=ledger.OVERPAYMENT, keep_excess=True)
        applied += result["entry_id"] is not None
    return applied


def step_delinquency(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    p = {"d": sql.date_value(day)}
    conn.execute(text(
        "UPDATE loans SET overdue_principal_minor = loans.overdue_principal_minor + x.p FROM "
        "(SELECT loan_id, sum(principal_due_minor - principal_paid_minor) AS p FROM installments "
        f"WHERE due_on = {sql.d('d')} GROUP BY loan_id) x "
        "WHERE x.loan_id = loans.loan_id AND x.p > 0 AND loans.status = 'active'"), p)
    dpd = (f"(CASE WHEN oldest_unpaid_due_on < {sql.d('d')} "
           f"THEN {sql.days(sql.d('d'), 'oldest_unpaid_due_on')} ELSE 0 END)")
    bucket = "(CASE " + " ".join(
        f"WHEN {dpd} >= {lower} THEN '{name}'" for name, lower, _ in reversed(domain.BUCKETS)) + " END)"
    return conn.execute(text(
        f"UPDATE loans SET dpd = {dpd}, max_dpd = CASE WHEN {dpd} > max_dpd THEN {dpd} ELSE max_dpd END, "
        f"bucket = {bucket}, defaulted_on = CASE WHEN defaulted_on IS NULL AND {dpd} >= {domain.DEFAULT_DPD} "
        f"THEN {sql.d('d')} ELSE defaulted_on END "
        f"WHERE status = 'active' AND (oldest_unpaid_due_on < {sql.d('d')} OR dpd <> 0)"), p).rowcount


def step_late_fees(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    p = {"d": sql.date_value(day), "e": f"close:{day}:late_fees",
         "d_start": sql.date_value(day - dt.timedelta(days=domain.MAX_LATE_FEE_GRACE_DAYS + 2))}
    late = (f"i.late_fee_charged = FALSE AND i.due_on >= {sql.d('d_start')} AND i.due_on < {sql.d('d')} "
            f"AND {sql.days(sql.d('d'), 'i.due_on')} > l.late_fee_grace_days "
            "AND (i.principal_paid_minor < i.principal_due_minor OR i.interest_paid_minor < i.interest_due_minor) "
            "AND l.status = 'active' AND l.late_fee_minor > 0")
    conn.execute(text(
        "INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
        "SELECT CAST(:e AS VARCHAR(120)), i.loan_id, 'FEES_RECEIVABLE', i.loan_id, sum(l.late_fee_minor) "
        f"FROM installments i JOIN loans l ON l.loan_id = i.loan_id WHERE {late} GROUP BY i.loan_id"), p)
    conn.execute(text(
        "UPDATE installments SET late_fee_charged = TRUE WHERE EXISTS (SELECT 1 FROM installments i "
        f"JOIN loans l ON l.loan_id = i.loan_id WHERE i.loan_id = installments.loan_id "
        f"AND i.seq = installments.seq AND {late})"), p)
    conn.execute(text(
        "UPDATE loans SET fees_minor = loans.fees_minor + jl.amount_minor FROM journal_lines jl "
        "WHERE jl.entry_id = :e AND jl.loan_id = loans.loan_id"), p)
    _balance_batch(conn, p["e"], ledger.FEE_INCOME)
    return _post_batch_header(conn, sql, p["e"], day, "late_fees", "late fees")


def step_write_off(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    p = {"d": sql.date_value(day), "e": f"close:{day}:write_off", "dpd": domain.WRITE_OFF_DPD}
    due = "status = 'active' AND dpd >= :dpd"
    for k, (account, column) in enumerate(
        ((ledger.LOANS_PRINCIPAL, "principal_minor"), (ledger.INTEREST_RECEIVABLE, "interest_minor"),
         (ledger.FEES_RECEIVABLE, "fees_minor")), start=1):
        conn.execute(text(
            "INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
            f"SELECT CAST(:e AS VARCHAR(120)), loan_id * 4 + {k}, '{account}', loan_id, -{column} FROM loans "
            f"WHERE {due} AND {column} <> 0"), p)
    n = conn.execute(text(
        "UPDATE loans SET principal_minor = 0, interest_minor = 0, fees_minor = 0, status = 'written_off', "
        f"written_off_on = {sql.d('d')}, closed_on = {sql.d('d')}, overdue_principal_minor = 0, "
        f"billed_interest_minor = 0, billed_principal_minor = 0 WHERE {due}"), p).rowcount
    _balance_batch(conn, p["e"], ledger.WRITE_OFF_EXPENSE)
    _post_batch_header(conn, sql, p["e"], day, "write_off", f"write-off at {domain.WRITE_OFF_DPD}+ DPD")
    return n


def step_close_matured(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    return conn.execute(text(
        f"UPDATE loans SET status = 'closed', closed_on = {sql.d('d')}, oldest_unpaid_due_on = NULL, "
        "overdue_principal_minor = 0, dpd = 0, bucket = 'current' "
        f"WHERE status = 'active' AND kind = 'revolving' AND maturity_on <= {sql.d('d')} AND principal_minor = 0 "
        "AND interest_minor = 0 AND fees_minor = 0 AND pending_disbursement_minor = 0"),
        {"d": sql.date_value(day)}).rowcount


def step_allowance(conn: Connection, sql: _Sql, day: dt.date, **_: object) -> int:
    exposure = dict(conn.execute(text(
        "SELECT bucket, sum(principal_minor + interest_minor + fees_minor) FROM loans "
        "WHERE status = 'active' GROUP BY bucket")).all())
    stored = dict(conn.execute(select(AllowanceBalance.bucket, AllowanceBalance.amount_minor)).all())
    lines: list[ledger.Line] = []
    for bucket, _, rate_bps in domain.BUCKETS:
        target = domain.half_up_div(int(exposure.get(bucket) or 0) * rate_bps, domain.BPS_PER_UNIT)
        delta = target - int(stored.get(bucket, 0))
        if delta:
            lines.append(ledger.Line(ledger.allowance_account(bucket), -delta))
            conn.execute(update(AllowanceBalance).where(AllowanceBalance.bucket == bucket).values(amount_minor=target))
    if lines:
        lines.append(ledger.Line(ledger.PROVISION_EXPENSE, -sum(ln.amount_minor for ln in lines)))
        ledger.post_entry(conn, entry_id=f"close:{day}:allowance", business_date=day, kind="allowance", lines=lines)
    return len(lines)


def step_export(conn: Connection, sql: _Sql, day: dt.date, *, lake_dir: Path | None = None, **_: object) -> int:
    if lake_dir is None:
        return 0
    from fieldbank.bank.export import export_loans

    return export_loans(conn, lake_dir, day)


STEP_FUNCTIONS: dict[str, Callable[..., int]] = {
    "accrue": step_accrue, "bill": step_bill, "apply_credit": step_apply_credit, "delinquency": step_delinquency,
    "late_fees": step_late_fees, "write_off": step_write_off, "close_matured": step_close_matured,
    "allowance": step_allowance, "export": step_export,
}
assert tuple(STEP_FUNCTIONS) == STEPS


def close_day(
    engine: Engine,
    day: dt.date,
    *,
    lake_dir: Path | None = None,
    crash_hook: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> CloseDayResult:
    """Close one business date (resuming a crashed run). Dates close in order: the previous
    date must be closed unless this is the first close ever.

    crash_hook (tests): "after:<step>" raises SimulatedCrash once the step has committed;
    "inside:<step>" raises inside the step's transaction (rolled back); "kill:<step>" ends the
    process abruptly inside the step's open transaction (a real crash).
    """
    sql = _Sql(engine.dialect.name)
    result = CloseDayResult(day)
    with engine.begin() as conn:
        runs = dict(conn.execute(select(CloseDayRun.business_date, CloseDayRun.status)).all())
        if runs.get(day) == "done":
            result.steps_skipped = list(STEPS)
            return result
        previous = day - dt.timedelta(days=1)
        if runs and runs.get(previous) != "done" and day not in runs:
            raise CloseDayError(f"cannot close {day}: the previous business date {previous} is not closed")
        if any(d > day for d in runs):
            raise CloseDayError(f"cannot close {day}: a later business date is already closed")
        if day not in runs:
            conn.execute(insert(CloseDayRun).values(business_date=day, status="running"))
    for name in STEPS:
        with engine.begin() as conn:
            if sql.pg:  # one close-day at a time (per database); released at commit
                conn.execute(text("SELECT pg_advisory_xact_lock(4242)"))
                # Set-based steps join and hash hundreds of thousands of rows: give this
                # transaction (only) the memory to do it without spilling to disk.
                conn.execute(text(f"SET LOCAL work_mem = '{PG_CLOSE_DAY_WORK_MEM}'"))
            done = conn.execute(select(CloseDayStep.step).where(
                CloseDayStep.business_date == day, CloseDayStep.step == name)).first()
            if done:
                result.steps_skipped.append(name)
                continue
            rows = STEP_FUNCTIONS[name](conn, sql, day, lake_dir=lake_dir)
            if crash_hook == f"inside:{name}":
                raise SimulatedCrash(crash_hook)
            if crash_hook == f"kill:{name}":  # the process dies mid-transaction, nothing unwinds
                os._exit(137)
            conn.execute(insert(CloseDayStep).values(business_date=day, step=name, rows_affected=rows))
            result.rows[name] = rows
            result.steps_run.append(name)
        if on_step:
            on_step(name)
        if crash_hook == f"after:{name}":
            raise SimulatedCrash(crash_hook)
    with engine.begin() as conn:
        conn.execute(update(CloseDayRun).where(CloseDayRun.business_date == day).values(
            status="done", finished_at=dt.datetime.now(dt.UTC)))
    return result


def close_days_through(engine: Engine, last_day: dt.date, *, lake_dir: Path | None = None,
                       on_day: Callable[[CloseDayResult], None] | None = None) -> list[CloseDayResult]:
    """Close every open business date up to and including last_day, in order."""
    with engine.connect() as conn:
        last_done = conn.execute(text("SELECT max(business_date) FROM close_day_runs WHERE status = 'done'")).scalar()
        first_open = conn.execute(text("SELECT min(opened_on) FROM loans")).scalar()
    last_done, first_open = (dt.date.fromisoformat(v) if isinstance(v, str) else v for v in (last_done, first_open))
    if last_done:
        first = last_done + dt.timedelta(days=1)
    else:  # first close ever: from the day after the first loan opened
        first = min(first_open + dt.timedelta(days=1), last_day) if first_open else last_day
    days = [first + dt.timedelta(days=k) for k in range((last_day - first).days + 1)]
    if len(days) > MAX_CATCH_UP_DAYS:
        raise CloseDayError(f"{len(days)} days to close: more than {MAX_CATCH_UP_DAYS}; close in smaller ranges")
    results = []
    for day in days:
        # Only the last day exports: outcomes of intermediate days are superseded anyway.
        results.append(close_day(engine, day, lake_dir=lake_dir if day == last_day else None))
        if on_day:
            on_day(results[-1])
    return results
