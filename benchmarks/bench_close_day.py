"""Benchmark: close-day over N active loans (default 1,000,000) on PostgreSQL and SQLite.

Bulk-creates a book (half revolving lines, half 6-month installment loans with their
schedules, 5 % of lines delinquent at 0-199 DPD so delinquency, penalties and write-offs do
real work) with set-based SQL (generate_series / a recursive CTE), posts the matching
disbursement entry so the books balance, then times one close-day (all eight steps, the
Parquet export of every loan included) and checks the books.
Baseline measured in the same run: one full-table UPDATE touching every loan once (the
floor for any nightly job that writes each loan), reported as a ratio.

    uv run --frozen python benchmarks/bench_close_day.py --loans 20000 --db both   # quick
    uv run --frozen python benchmarks/bench_close_day.py --loans 1000000 --db both # the figure
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from fieldbank.bank import ledger
from fieldbank.bank.close_day import STEPS, close_day
from fieldbank.bank.db import make_engine, migrate, scratch_schema_engine
from fieldbank.bank.service import BankService

console = Console()
PG_URL = os.environ.get("FIELDBANK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
D0 = dt.date(2026, 6, 1)  # last day before the benchmarked close
RESULTS = Path(__file__).parent / "results" / "close_day.json"


def _sql(pg: bool):  # noqa: ANN202
    def days_before(n_expr: str) -> str:
        return f"(CAST(:d0 AS DATE) - ({n_expr}))" if pg else f"date(:d0, '-' || ({n_expr}) || ' days')"

    def plus_months(date_expr: str, k_expr: str) -> str:
        return (f"CAST({date_expr} + make_interval(months => CAST({k_expr} AS INTEGER)) AS DATE)" if pg
                else f"date({date_expr}, '+' || ({k_expr}) || ' months')")

    series = ("FROM generate_series(1, :n) AS s(n)" if pg else
              "FROM (WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :n) SELECT n FROM s) s")
    return days_before, plus_months, series


def bulk_create(engine, n_loans: int) -> None:  # noqa: ANN001
    pg = engine.dialect.name == "postgresql"
    days_before, plus_months, series = _sql(pg)
    d0 = D0 if pg else D0.isoformat()
    revolving = "s.n % 2 = 0"
    delinquent = "s.n % 40 = 0"  # 5 % of lines (every 20th line)
    principal = "(100000 + (s.n % 97) * 1000)"
    opened = f"CASE WHEN {revolving} THEN {days_before('s.n % 150 + 1')} ELSE {days_before('s.n % 28 + 1')} END"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO loans (loan_id, offer_id, party_id, product_code, kind, apr_bps, penalty_bps, day_count, "
            "late_fee_minor, late_fee_grace_days, cycle_days, payment_due_days, min_payment_bps, allocation_order, "
            "limit_minor, opened_on, maturity_on, term_days, status, principal_minor, interest_minor, fees_minor, "
            "credit_minor, payment_account_minor, pending_disbursement_minor, disbursed_minor, recovered_minor, "
            "interest_carry, penalty_carry, billed_interest_minor, billed_principal_minor, overdue_principal_minor, "
            "oldest_unpaid_due_on, dpd, max_dpd, bucket) "
            f"SELECT s.n, 'bench-' || s.n, 'party-' || (s.n % 700000), "
            f"CASE WHEN {revolving} THEN 'line-revolving' ELSE 'equal-principal-6m' END, "
            f"CASE WHEN {revolving} THEN 'revolving' ELSE 'installment' END, "
            f"CASE WHEN {revolving} THEN 1800 ELSE 1200 END, 600, "
            f"CASE WHEN {revolving} THEN 'ACT/365' ELSE '30/360' END, 2000, 3, 30, 10, 1000, "
            "'fees,interest,principal', "
            f"CASE WHEN {revolving} THEN 200000 ELSE {principal} END, "
            f"{opened}, {plus_months(opened, '12')}, 365, 'active', {principal}, 0, 0, 0, 0, 0, {principal}, 0, "
            "0, 0, 0, 0, "
            f"CASE WHEN {delinquent} THEN {principal} / 10 ELSE 0 END, "
            f"CASE WHEN {delinquent} THEN {days_before('(s.n / 40) % 200')} ELSE NULL END, 0, 0, 'current' "
            f"{series}"), {"n": n_loans, "d0": d0})
        conn.execute(text(
            "INSERT INTO installments (loan_id, seq, start_on, due_on, principal_due_minor, interest_due_minor, "
            "interest_accrued_minor, principal_paid_minor, interest_paid_minor, late_fee_charged) "
            f"SELECT l.loan_id, k.k, {plus_months('l.opened_on', 'k.k - 1')}, {plus_months('l.opened_on', 'k.k')}, "
            "CASE WHEN k.k = 6 THEN l.principal_minor - 5 * (l.principal_minor / 6) ELSE l.principal_minor / 6 END, "
            "(l.principal_minor - (k.k - 1) * (l.principal_minor / 6)) / 100, 0, 0, 0, FALSE "
            "FROM loans l CROSS JOIN (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 "
            "UNION ALL SELECT 5 UNION ALL SELECT 6) k WHERE l.kind = 'installment'"))
        conn.execute(text(
            "UPDATE loans SET oldest_unpaid_due_on = i.due_on FROM installments i "
            "WHERE i.loan_id = loans.loan_id AND i.seq = 1 AND loans.kind = 'installment'"))
        # The disbursements in one balanced batch entry, so the books balance from the start.
        conn.execute(text(
            "INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
            "SELECT 'bench:disburse', loan_id, 'LOANS_PRINCIPAL', loan_id, principal_minor FROM loans"))
        conn.execute(text(
            "INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
            "SELECT 'bench:disburse', 0, 'CLEARING', NULL, -sum(principal_minor) FROM loans"))
        conn.execute(text(
            "INSERT INTO journal_entries (entry_id, business_date, kind, line_count, memo) "
            "VALUES ('bench:disburse', :d0, 'bench_disburse', :c, 'benchmark book')"), {"d0": d0, "c": n_loans + 1})
    with engine.connect() as conn:
        if pg:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("VACUUM ANALYZE loans"))
            conn.execute(text("VACUUM ANALYZE installments"))
            conn.execute(text("VACUUM ANALYZE journal_lines"))
        else:
            conn.execute(text("ANALYZE"))
            conn.commit()


def baseline_full_update(engine) -> float:  # noqa: ANN001
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("UPDATE loans SET dpd = dpd + 0"))
    return time.perf_counter() - started


def run(db: str, n_loans: int) -> dict:
    cleanup = None
    if db == "pg":
        engine, cleanup = scratch_schema_engine(PG_URL, "bench")
    else:
        directory = tempfile.mkdtemp(prefix="fb-bench-")
        engine = make_engine(f"sqlite:///{directory}/bank.db")

        def cleanup() -> None:
            engine.dispose()
            import shutil

            shutil.rmtree(directory, ignore_errors=True)

    lake_dir = tempfile.mkdtemp(prefix="fb-bench-lake-")
    try:
        migrate(engine)
        BankService(engine).ensure_products()
        started = time.perf_counter()
        with console.status(f"[{db}] bulk-creating {n_loans:,} loans"):
            bulk_create(engine, n_loans)
        create_s = time.perf_counter() - started
        baseline_s = baseline_full_update(engine)
        step_times: dict[str, float] = {}
        last = [time.perf_counter()]

        def on_step(name: str) -> None:
            now = time.perf_counter()
            step_times[name] = round(now - last[0], 3)
            last[0] = now

        day = D0 + dt.timedelta(days=1)
        with console.status(f"[{db}] close-day {day} over {n_loans:,} loans"):
            started = time.perf_counter()
            last[0] = started
            result = close_day(engine, day, lake_dir=Path(lake_dir), on_step=on_step)
            close_s = time.perf_counter() - started
        started = time.perf_counter()
        with engine.connect() as conn:
            check = ledger.check_books(conn)
        check_s = time.perf_counter() - started
        assert check.ok, check
        return {
            "db": db, "loans": n_loans, "create_s": round(create_s, 2), "close_day_s": round(close_s, 2),
            "loans_per_s": round(n_loans / close_s), "baseline_full_update_s": round(baseline_s, 2),
            "close_day_over_baseline": round(close_s / baseline_s, 2), "check_books_s": round(check_s, 2),
            "books_ok": check.ok, "rows": result.rows, "step_s": step_times,
        }
    finally:
        cleanup()
        import shutil

        shutil.rmtree(lake_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loans", type=int, default=1_000_000, help="active loans in the book")
    parser.add_argument("--db", choices=("pg", "sqlite", "both"), default="both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    assert 100 <= args.loans <= 5_000_000, "--loans between 100 and 5,000,000"
    results = [run(db, args.loans) for db in (("pg", "sqlite") if args.db == "both" else (args.db,))]
    table = Table(title=f"close-day over {args.loans:,} active loans")
    for col in ("db", "bulk create s", "close-day s", "loans/s", "baseline: 1 UPDATE of all loans s",
                "close-day / baseline", "check_books s"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(r["db"], f"{r['create_s']:.1f}", f"{r['close_day_s']:.1f}", f"{r['loans_per_s']:,}",
                      f"{r['baseline_full_update_s']:.2f}", f"{r['close_day_over_baseline']:.1f}",
                      f"{r['check_books_s']:.1f}")
    console.print(table)
    steps = Table(title="close-day steps (s)")
    steps.add_column("step")
    for r in results:
        steps.add_column(r["db"], justify="right")
    for step in STEPS:
        steps.add_row(step, *(f"{r['step_s'].get(step, 0):.2f}" for r in results))
    console.print(steps)
    if args.out.exists():  # keep the other database's last result when only one is rerun
        previous = json.loads(args.out.read_text()).get("results", [])
        results = [r for r in previous if r["db"] not in {x["db"] for x in results}] + results
        results.sort(key=lambda r: r["db"] != "pg")
    payload = {"benchmark": "close_day", "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    best = min(results, key=lambda r: r["close_day_s"])
    summary = ", ".join(f"{r['db']} {r['close_day_s']:.1f} s ({r['loans_per_s']:,} loans/s)" for r in results)
    console.print(f"close-day: {summary} over {args.loans:,} loans; books balance; fastest {best['db']}; "
                  f"JSON in {args.out}")


if __name__ == "__main__":
    main()
