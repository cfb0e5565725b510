"""Hypothesis stateful: random sequences of open / draw / repay / prepay / close-day /
reversal / retried requests. After every step: the ledger balances and equals every stored
balance, no balance is negative, no line is over its limit, and a model of each loan's
principal (from the operations' own results) matches the database."""

from __future__ import annotations

import atexit
import datetime as dt
import itertools
import os
import shutil
import tempfile
import uuid

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import text

from fieldbank.bank import ledger
from fieldbank.bank.close_day import close_days_through
from fieldbank.bank.db import make_engine, migrate, scratch_schema_engine
from fieldbank.bank.domain import DomainError
from fieldbank.bank.service import BankService

from .conftest import PG_URL

DAY0 = dt.date(2026, 1, 1)
PRODUCTS = ("line-revolving", "line-revolving", "annuity-12m", "equal-principal-6m", "seasonal-9m")
_template: dict[str, str] = {}


def _sqlite_engine():  # noqa: ANN202
    """A fresh migrated SQLite database: a copy of a template migrated once per process."""
    if "path" not in _template:
        directory = tempfile.mkdtemp(prefix="fb-template-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        path = os.path.join(directory, "template.db")
        eng = make_engine(f"sqlite:///{path}")
        migrate(eng)
        BankService(eng).ensure_products()
        eng.dispose()
        _template["path"] = path
    target = os.path.join(tempfile.mkdtemp(prefix="fb-state-"), "bank.db")
    shutil.copy(_template["path"], target)
    return make_engine(f"sqlite:///{target}"), lambda: shutil.rmtree(os.path.dirname(target), ignore_errors=True)


def _pg_engine():  # noqa: ANN202
    eng, drop = scratch_schema_engine(PG_URL, "fbs", pool_size=2)
    migrate(eng)
    BankService(eng).ensure_products()
    return eng, drop


def _without_replayed(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_replayed(v) for k, v in value.items() if k != "replayed"}
    return value


class BankMachine(RuleBasedStateMachine):
    backend = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        self.engine, self._cleanup = _sqlite_engine() if self.backend == "sqlite" else _pg_engine()
        self.bank = BankService(self.engine)
        self.open_date = DAY0
        self.keys = itertools.count()
        self.loans: dict[int, str] = {}  # loan_id -> kind
        self.principal: dict[int, int] = {}  # model: principal from the operations' results
        self.history: list[tuple[str, dict, dict]] = []  # (operation, request, response) to retry
        self.repayments: list[str] = []

    def teardown(self) -> None:
        self.engine.dispose()
        self._cleanup()

    def _key(self) -> str:
        return f"k{next(self.keys)}"

    def _sync_written_off(self) -> None:
        with self.engine.connect() as conn:
            for loan_id, status in conn.execute(text("SELECT loan_id, status FROM loans")).all():
                if status in ("written_off", "closed", "cancelled"):
                    self.principal[loan_id] = 0

    @rule(product=st.sampled_from(PRODUCTS), amount=st.integers(1_000, 500_000))
    def open(self, product: str, amount: int) -> None:
        request = {"offer_id": f"offer-{uuid.uuid4().hex[:8]}", "party_id": "p", "product_code": product,
                   "amount_minor": amount, "idempotency_key": self._key(), "on": self.open_date}
        result = self.bank.open_line(**request)
        self.loans[result["loan_id"]] = result["kind"]
        self.principal[result["loan_id"]] = amount if result["kind"] == "installment" else 0
        self.history.append(("open_line", request, result))

    @precondition(lambda self: self.loans)
    @rule(data=st.data(), amount=st.integers(1, 300_000))
    def draw(self, data: st.DataObject, amount: int) -> None:
        lines = [i for i, k in self.loans.items() if k == "revolving"]
        if not lines:
            return
        loan_id = data.draw(st.sampled_from(lines))
        request = {"loan_id": loan_id, "amount_minor": amount, "idempotency_key": self._key(), "on": self.open_date}
        try:
            result = self.bank.draw(**request)
        except DomainError:
            return  # over the limit, matured or not active: refused, nothing changed
        self.principal[loan_id] += amount
        self.history.append(("draw", request, result))

    @precondition(lambda self: self.loans)
    @rule(data=st.data(), amount=st.integers(1, 400_000), prepay=st.booleans())
    def repay(self, data: st.DataObject, amount: int, prepay: bool) -> None:
        loan_id = data.draw(st.sampled_from(sorted(self.loans)))
        request = {"loan_id": loan_id, "amount_minor": amount, "idempotency_key": self._key(), "on": self.open_date}
        try:
            result = (self.bank.prepay if prepay else self.bank.repay)(**request)
        except DomainError:
            return
        self.principal[loan_id] -= result["paid"]["principal"]
        self.history.append(("prepay" if prepay else "repay", request, result))
        if not prepay and result["entry_id"] and not result["recovery_minor"]:
            self.repayments.append(result["entry_id"])
        self._sync_written_off()

    @precondition(lambda self: self.repayments)
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(self.repayments))
        self.repayments.remove(entry_id)
        with self.engine.connect() as conn:
            principal_paid = -sum(ln.amount_minor for ln in ledger.entry_lines(conn, entry_id)
                                  if ln.account_code == ledger.LOANS_PRINCIPAL)
            loan_id = conn.execute(text("SELECT loan_id FROM journal_entries WHERE entry_id = :e"),
                                   {"e": entry_id}).scalar_one()
        try:
            self.bank.reverse_payment(entry_id=entry_id, idempotency_key=self._key(), on=self.open_date)
        except DomainError:
            return
        self.principal[loan_id] += principal_paid

    @precondition(lambda self: self.history)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        operation, request, response = data.draw(st.sampled_from(self.history))
        if operation == "open_line":
            again = self.bank.open_line(**request)
        elif operation == "draw":
            again = self.bank.draw(**request)
        else:
            again = (self.bank.prepay if operation == "prepay" else self.bank.repay)(**request)
        assert again["replayed"] is True
        assert _without_replayed(again) == _without_replayed(response)

    @rule(days=st.integers(1, 35))
    def close(self, days: int) -> None:
        last = self.open_date + dt.timedelta(days=days - 1)
        close_days_through(self.engine, last)
        # Credit balances paid principal that fell due: take those payments into the model.
        with self.engine.connect() as conn:
            for loan_id, amount in conn.execute(text(
                "SELECT l.loan_id, sum(l.amount_minor) FROM journal_lines l JOIN journal_entries e "
                "ON e.entry_id = l.entry_id WHERE e.kind = 'credit_applied' AND l.account_code = 'LOANS_PRINCIPAL' "
                "AND e.business_date >= :a AND e.business_date <= :b GROUP BY l.loan_id"),
                {"a": self.open_date, "b": last}).all():
                self.principal[loan_id] += int(amount)
        self.open_date = last + dt.timedelta(days=1)
        self._sync_written_off()

    @invariant()
    def books_balance_and_match(self) -> None:
        with self.engine.connect() as conn:
            check = ledger.check_books(conn)
            loans = conn.execute(text(
                "SELECT loan_id, kind, status, limit_minor, principal_minor, interest_minor, fees_minor, "
                "credit_minor FROM loans")).all()
        assert check.ok, check
        for loan in loans:
            assert min(loan.principal_minor, loan.interest_minor, loan.fees_minor, loan.credit_minor) >= 0, loan
            if loan.kind == "revolving":
                assert loan.principal_minor <= loan.limit_minor, loan
            assert loan.principal_minor == self.principal[loan.loan_id], (loan, self.principal[loan.loan_id])


class PgBankMachine(BankMachine):
    backend = "pg"


TestBankStateMachineSqlite = pytest.mark.slow(BankMachine.TestCase)
TestBankStateMachineSqlite.settings = settings(
    max_examples=10, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False)

TestBankStateMachinePg = pytest.mark.slow(pytest.mark.pg(PgBankMachine.TestCase))
TestBankStateMachinePg.settings = settings(
    max_examples=4, stateful_step_count=15, deadline=None, suppress_health_check=list(HealthCheck))
