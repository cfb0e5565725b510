"""Close-day: exact accrual, delinquency, late fees, write-off, recoveries, allowances,
idempotent reruns, crash-and-resume, and the lake export."""

from __future__ import annotations

import datetime as dt

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from fieldbank import contract
from fieldbank.lake.read import lake_files, read_lake_table
from fieldbank.bank import ledger
from fieldbank.bank.close_day import CloseDayError, SimulatedCrash, close_day, close_days_through
from fieldbank.bank.domain import AccrualState, Product
from fieldbank.bank.service import BankService

from .conftest import snapshot

DAY = dt.date(2026, 1, 1)
LINE = Product("line-test", "revolving", "revolving", apr_bps=1_800, term_months=12, day_count="ACT/365",
               penalty_bps=900, late_fee_minor=2_000, late_fee_grace_days=3, cycle_days=30, payment_due_days=10,
               min_payment_bps=1_000)


def _bank(engine) -> BankService:  # noqa: ANN001
    bank = BankService(engine)
    bank.ensure_products((LINE,))
    return bank


def _books_ok(engine) -> None:  # noqa: ANN001
    with engine.connect() as conn:
        check = ledger.check_books(conn)
    assert check.ok, check


def test_daily_accrual_is_exact_with_carried_remainder(engine) -> None:  # noqa: ANN001
    bank = _bank(engine)
    loan_id = bank.open_line(offer_id="o", party_id="p", product_code="line-test", amount_minor=1_000_000,
                             idempotency_key="open", on=DAY)["loan_id"]
    bank.draw(loan_id=loan_id, amount_minor=400_000, idempotency_key="d", on=DAY)
    close_days_through(engine, DAY + dt.timedelta(days=1))
    close_days_through(engine, DAY + dt.timedelta(days=20))
    mirror = AccrualState("ACT/365")
    for k in range(1, 21):
        mirror.accrue(400_000, 1_800, DAY + dt.timedelta(days=k))
    with engine.connect() as conn:
        daily = [conn.execute(text("SELECT amount_minor FROM journal_lines WHERE entry_id = :e AND loan_id = :l"),
                              {"e": f"close:{DAY + dt.timedelta(days=k)}:interest", "l": loan_id}).scalar_one()
                 for k in range(1, 21)]
    assert daily == mirror.accrued_minor
    assert daily[:4] == [197, 197, 197, 198]
    loan = bank.loan(loan_id)
    # 20 days of 400,000 at 18 % ACT/365 = 3,945.2054...: 3,945 booked, the rest carried.
    assert loan["interest_minor"] == sum(daily) == 400_000 * 1_800 * 20 // 3_650_000 == 3_945
    assert loan["interest_carry"] == 400_000 * 1_800 * 20 % 3_650_000
    _books_ok(engine)


@pytest.mark.slow
def test_delinquency_late_fee_default_write_off_and_recovery(engine) -> None:  # noqa: ANN001
    bank = _bank(engine)
    loan_id = bank.open_line(offer_id="o", party_id="p", product_code="line-test", amount_minor=100_000,
                             idempotency_key="open", on=DAY)["loan_id"]
    bank.draw(loan_id=loan_id, amount_minor=100_000, idempotency_key="d", on=DAY)
    seen: dict[int, tuple[int, str]] = {}

    def record(result) -> None:  # noqa: ANN001
        loan = bank.loan(loan_id)
        seen[(result.business_date - DAY).days] = (loan["dpd"], loan["bucket"])

    close_days_through(engine, DAY + dt.timedelta(days=240), on_day=record)
    # First statement on day 30, due day 40: DPD 1 on day 41, 31-60 from day 71, 90+ from day 131.
    assert seen[40] == (0, "current") and seen[41] == (1, "1-30") and seen[71] == (31, "31-60")
    assert seen[130] == (90, "61-90") and seen[131] == (91, "90+")
    assert seen[219] == (179, "90+")
    loan = bank.loan(loan_id)
    assert loan["status"] == "written_off" and loan["written_off_on"] == DAY + dt.timedelta(days=220)
    assert loan["defaulted_on"] == DAY + dt.timedelta(days=130) and loan["max_dpd"] == 180
    assert (loan["principal_minor"], loan["interest_minor"], loan["fees_minor"]) == (0, 0, 0)
    with engine.connect() as conn:
        # A late fee on each missed statement, the first on day 44 (grace 3 days after day 40).
        assert conn.execute(text("SELECT amount_minor FROM journal_lines WHERE entry_id = :e AND loan_id = :l"),
                            {"e": f"close:{DAY + dt.timedelta(days=44)}:late_fees", "l": loan_id}).scalar_one() == 2_000
        written = conn.execute(text("SELECT account_code, amount_minor FROM journal_lines WHERE entry_id = :e "
                                    "ORDER BY line_no"), {"e": f"close:{DAY + dt.timedelta(days=220)}:write_off"}).all()
    assert written[0][0] == "WRITE_OFF_EXPENSE" and written[1] == ("LOANS_PRINCIPAL", -100_000)
    assert sum(a for _, a in written) == 0
    recovery = bank.repay(loan_id=loan_id, amount_minor=7_000, idempotency_key="late", on=DAY + dt.timedelta(days=241))
    assert recovery["recovery_minor"] == 7_000
    with engine.connect() as conn:
        tb = {r["account_code"]: r["balance_minor"] for r in ledger.trial_balance(conn)}
    assert tb["RECOVERIES"] == -7_000 and tb["LOANS_PRINCIPAL"] == 0
    assert tb["LOSS_ALLOWANCE_90+"] == 0  # nothing left in 90+ after the write-off: allowance released
    _books_ok(engine)


def test_allowance_by_bucket(engine) -> None:  # noqa: ANN001
    bank = _bank(engine)
    loan_id = bank.open_line(offer_id="o", party_id="p", product_code="line-test", amount_minor=500_000,
                             idempotency_key="open", on=DAY)["loan_id"]
    bank.draw(loan_id=loan_id, amount_minor=300_000, idempotency_key="d", on=DAY)
    close_day(engine, DAY + dt.timedelta(days=1))
    loan = bank.loan(loan_id)
    exposure = loan["principal_minor"] + loan["interest_minor"]
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT amount_minor FROM allowance_balances WHERE bucket = 'current'")).scalar_one()
        lines = ledger.entry_lines(conn, f"close:{DAY + dt.timedelta(days=1)}:allowance")
    assert stored == (exposure * 100 + 5_000) // 10_000  # 1 % on current, half-up
    assert [(ln.account_code, ln.amount_minor) for ln in lines] == [
        ("LOSS_ALLOWANCE_current", -stored), ("PROVISION_EXPENSE", stored)]
    _books_ok(engine)


def test_close_day_is_idempotent_and_ordered(engine) -> None:  # noqa: ANN001
    bank = _bank(engine)
    loan_id = bank.open_line(offer_id="o", party_id="p", product_code="line-test", amount_minor=500_000,
                             idempotency_key="open", on=DAY)["loan_id"]
    bank.draw(loan_id=loan_id, amount_minor=300_000, idempotency_key="d", on=DAY)
    close_day(engine, DAY + dt.timedelta(days=1))
    before = snapshot(engine)
    again = close_day(engine, DAY + dt.timedelta(days=1))
    assert again.steps_run == [] and snapshot(engine) == before
    with pytest.raises(CloseDayError, match="previous business date"):
        close_day(engine, DAY + dt.timedelta(days=3))


def _scenario(engine, crash_hook: str | None) -> dict:  # noqa: ANN001
    """A small mixed book closed over 45 days; optionally crashed once on day 41 and resumed."""
    bank = _bank(engine)
    bank.ensure_products()
    a = bank.open_line(offer_id="a", party_id="p1", product_code="line-test", amount_minor=200_000,
                       idempotency_key="a", on=DAY)["loan_id"]
    bank.draw(loan_id=a, amount_minor=150_000, idempotency_key="da", on=DAY)
    bank.open_line(offer_id="b", party_id="p2", product_code="annuity-12m", amount_minor=300_000,
                   idempotency_key="b", on=DAY)
    c = bank.open_line(offer_id="c", party_id="p3", product_code="equal-principal-6m", amount_minor=120_000,
                       idempotency_key="c", on=DAY)["loan_id"]
    bank.repay(loan_id=c, amount_minor=30_000, idempotency_key="rc", on=DAY)  # goes to credit, applied when due
    close_days_through(engine, DAY + dt.timedelta(days=40))
    crash_day = DAY + dt.timedelta(days=41)
    if crash_hook:
        with pytest.raises(SimulatedCrash):
            close_day(engine, crash_day, crash_hook=crash_hook)
    close_days_through(engine, DAY + dt.timedelta(days=45))
    _books_ok(engine)
    return snapshot(engine)


@pytest.mark.parametrize("crash_hook", ["after:accrue", "inside:apply_credit", "after:allowance"])
def test_crash_midway_then_rerun_gives_identical_books(engine_factory, crash_hook: str) -> None:  # noqa: ANN001
    clean = _scenario(engine_factory(), None)
    crashed = _scenario(engine_factory(), crash_hook)
    assert crashed == clean


def test_credit_balance_pays_the_installment_when_due(engine) -> None:  # noqa: ANN001
    bank = _bank(engine)
    bank.ensure_products()
    loan_id = bank.open_line(offer_id="c", party_id="p", product_code="equal-principal-6m", amount_minor=120_000,
                             idempotency_key="c", on=DAY)["loan_id"]
    bank.repay(loan_id=loan_id, amount_minor=25_000, idempotency_key="early", on=DAY)
    assert bank.loan(loan_id)["credit_minor"] == 25_000  # nothing due yet: all credit
    close_days_through(engine, dt.date(2026, 2, 3))
    loan = bank.loan(loan_id)
    first = bank.schedule(loan_id)[0]
    assert (first["principal_paid_minor"], first["interest_paid_minor"]) == (20_000, 1_200)  # 120k/6, 1 %/month
    assert loan["credit_minor"] == 25_000 - 21_200 and loan["dpd"] == 0
    _books_ok(engine)


def test_export_matches_the_lake_contract(engine, tmp_path) -> None:  # noqa: ANN001
    bank = _bank(engine)
    loan_id = bank.open_line(offer_id="o", party_id="party-9", product_code="line-test", amount_minor=50_000,
                             idempotency_key="open", on=DAY)["loan_id"]
    bank.open_line(offer_id="never-drawn", party_id="party-8", product_code="line-test", amount_minor=50_000,
                   idempotency_key="open2", on=DAY)
    bank.draw(loan_id=loan_id, amount_minor=20_000, idempotency_key="d", on=DAY)
    close_day(engine, DAY + dt.timedelta(days=1), lake_dir=tmp_path)
    close_day(engine, DAY + dt.timedelta(days=2), lake_dir=tmp_path)  # a second export replaces the first
    (path,) = lake_files(tmp_path, "loans")
    assert path.parent.name == "month=2026-01" and path.name.startswith("snapshot-fieldbank-")
    table = read_lake_table(tmp_path, "loans")
    assert table.schema.equals(contract.LOANS.schema)
    assert table.to_pylist() == [{
        "loan_id": f"fieldbank-{loan_id}", "party_id": "party-9", "lender": "fieldbank",
        "opened_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "principal_minor": 20_000, "term_days": 365,
        "closed_at": None, "max_dpd": 0, "defaulted_at": None, "written_off": False}]


SHORT_LINE = Product("line-short", "revolving", "revolving", apr_bps=0, term_months=1, day_count="ACT/365",
                     cycle_days=30, payment_due_days=5, allocation_order=("principal", "interest", "fees"))


def test_matured_line_closes_and_allocation_order_is_configurable(engine) -> None:  # noqa: ANN001
    bank = BankService(engine)
    bank.ensure_products((SHORT_LINE,))
    loan_id = bank.open_line(offer_id="o", party_id="p", product_code="line-short", amount_minor=10_000,
                             idempotency_key="open", on=DAY)["loan_id"]
    bank.draw(loan_id=loan_id, amount_minor=10_000, idempotency_key="d", on=DAY)
    with engine.begin() as conn:  # a fee owed, to see the order: principal first for this product
        ledger.post_entry(conn, entry_id="fee-1", business_date=DAY, kind="fee", loan_id=loan_id,
                          lines=[ledger.Line(ledger.FEES_RECEIVABLE, 500, loan_id), ledger.Line(ledger.FEE_INCOME, -500)])
    paid = bank.repay(loan_id=loan_id, amount_minor=10_000, idempotency_key="r", on=DAY)
    assert paid["paid"] == {"principal": 10_000, "interest": 0, "fees": 0}
    bank.repay(loan_id=loan_id, amount_minor=500, idempotency_key="r2", on=DAY)
    close_days_through(engine, dt.date(2026, 2, 1))  # maturity 1 Feb, nothing owed
    loan = bank.loan(loan_id)
    assert loan["status"] == "closed" and loan["closed_on"] == dt.date(2026, 2, 1)
    _books_ok(engine)


KILL_SCRIPT = """
import datetime as dt, sys
from fieldbank.bank.db import make_engine
from fieldbank.bank.close_day import close_day
url, schema, day, hook = sys.argv[1:5]
engine = make_engine(url, schema=schema or None)
close_day(engine, dt.date.fromisoformat(day), crash_hook=hook)
"""


@pytest.mark.slow
def test_process_killed_inside_a_step_then_rerun_gives_identical_books(engine_factory) -> None:  # noqa: ANN001
    import subprocess
    import sys

    clean_engine = engine_factory()
    clean = _scenario(clean_engine, None)
    engine = engine_factory()
    bank = _bank(engine)
    bank.ensure_products()
    # Same book as _scenario, closed up to day 40, then a real process dies inside day 41's accrual.
    a = bank.open_line(offer_id="a", party_id="p1", product_code="line-test", amount_minor=200_000,
                       idempotency_key="a", on=DAY)["loan_id"]
    bank.draw(loan_id=a, amount_minor=150_000, idempotency_key="da", on=DAY)
    bank.open_line(offer_id="b", party_id="p2", product_code="annuity-12m", amount_minor=300_000,
                   idempotency_key="b", on=DAY)
    c = bank.open_line(offer_id="c", party_id="p3", product_code="equal-principal-6m", amount_minor=120_000,
                       idempotency_key="c", on=DAY)["loan_id"]
    bank.repay(loan_id=c, amount_minor=30_000, idempotency_key="rc", on=DAY)
    close_days_through(engine, DAY + dt.timedelta(days=40))
    url = engine.url.render_as_string(hide_password=False)
    schema = ""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    engine.dispose()
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, url, schema,
                             (DAY + dt.timedelta(days=41)).isoformat(), "kill:accrue"], capture_output=True)
    assert killed.returncode == 137, killed.stderr.decode()[-2000:]
    with engine.connect() as conn:  # the killed transaction left nothing behind
        assert conn.execute(text("SELECT count(*) FROM close_day_steps WHERE business_date = :d"),
                            {"d": DAY + dt.timedelta(days=41)}).scalar_one() == 0
    close_days_through(engine, DAY + dt.timedelta(days=45))
    _books_ok(engine)
    assert snapshot(engine) == clean
