"""Ledger guarantees, enforced by the database itself (raw SQL bypassing the code's checks)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from fieldbank.bank import ledger
from fieldbank.bank.service import BankService

DAY = dt.date(2026, 1, 5)


def _raw_lines(conn, entry_id: str, amounts: list[int]) -> None:  # noqa: ANN001
    for n, amount in enumerate(amounts, start=1):
        conn.execute(text("INSERT INTO journal_lines (entry_id, line_no, account_code, loan_id, amount_minor) "
                          "VALUES (:e, :n, 'CLEARING', NULL, :a)"), {"e": entry_id, "n": n, "a": amount})


def _raw_header(conn, entry_id: str, line_count: int) -> None:  # noqa: ANN001
    conn.execute(text("INSERT INTO journal_entries (entry_id, business_date, kind, line_count, memo) "
                      "VALUES (:e, :d, 'test', :n, '')"), {"e": entry_id, "d": DAY, "n": line_count})


def _count_entries(engine) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one()


def test_unbalanced_entry_cannot_commit(engine) -> None:  # noqa: ANN001
    with pytest.raises(DBAPIError, match="unbalanced"):
        with engine.begin() as conn:
            _raw_lines(conn, "bad-1", [100, -99])
            _raw_header(conn, "bad-1", 2)
    assert _count_entries(engine) == 0


def test_lines_without_header_cannot_commit(engine) -> None:  # noqa: ANN001
    with pytest.raises(DBAPIError):
        with engine.begin() as conn:
            _raw_lines(conn, "orphan", [100])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM journal_lines")).scalar_one() == 0


def test_header_count_must_match_lines(engine) -> None:  # noqa: ANN001
    with pytest.raises(DBAPIError, match="unbalanced"):
        with engine.begin() as conn:
            _raw_lines(conn, "short", [100, -100])
            _raw_header(conn, "short", 3)


def test_posted_entries_are_immutable(engine) -> None:  # noqa: ANN001
    with engine.begin() as conn:
        _raw_lines(conn, "good", [100, -100])
        _raw_header(conn, "good", 2)
    for statement in (
        "UPDATE journal_lines SET amount_minor = 5 WHERE entry_id = 'good'",
        "DELETE FROM journal_lines WHERE entry_id = 'good'",
        "UPDATE journal_entries SET memo = 'x' WHERE entry_id = 'good'",
        "DELETE FROM journal_entries WHERE entry_id = 'good'",
        # a balanced pair appended to a posted entry is still rejected: the entry is closed
        "INSERT INTO journal_lines (entry_id, line_no, account_code, amount_minor) VALUES ('good', 9, 'CLEARING', 1)",
    ):
        with pytest.raises(DBAPIError, match="immutable"):
            with engine.begin() as conn:
                conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sum(amount_minor), count(*) FROM journal_lines")).one() == (0, 2)


def test_code_refuses_unbalanced_before_the_database(engine) -> None:  # noqa: ANN001
    with pytest.raises(ledger.UnbalancedEntry):
        with engine.begin() as conn:
            ledger.post_entry(conn, entry_id="x", business_date=DAY, kind="test",
                              lines=[ledger.Line(ledger.CLEARING, 5), ledger.Line(ledger.SUSPENSE, -4)])


def test_reversal_mirrors_and_books_balance(bank: BankService) -> None:
    opened = bank.open_line(offer_id="o", party_id="p", product_code="line-revolving", amount_minor=50_000,
                            idempotency_key="open", on=DAY)
    bank.draw(loan_id=opened["loan_id"], amount_minor=20_000, idempotency_key="d1", on=DAY)
    paid = bank.repay(loan_id=opened["loan_id"], amount_minor=30_000, idempotency_key="r1", on=DAY)
    assert paid["paid"]["principal"] == 20_000 and paid["excess_minor"] == 10_000
    bank.reverse_payment(entry_id=paid["entry_id"], idempotency_key="rev1", on=DAY)
    loan = bank.loan(opened["loan_id"])
    assert (loan["principal_minor"], loan["credit_minor"]) == (20_000, 0)
    with bank.engine.connect() as conn:
        lines = ledger.entry_lines(conn, f"rev:{paid['entry_id']}")
        original = ledger.entry_lines(conn, paid["entry_id"])
        assert [(ln.account_code, -ln.amount_minor) for ln in lines] == [(o.account_code, o.amount_minor) for o in original]
        assert ledger.check_books(conn).ok
        tb = ledger.trial_balance(conn)
    assert sum(r["balance_minor"] for r in tb) == 0


def test_migrations_downgrade_and_upgrade(engine) -> None:  # noqa: ANN001
    from fieldbank.bank.db import downgrade, migrate

    downgrade(engine, "base")
    with engine.connect() as conn:
        assert "loans" not in engine.dialect.get_table_names(conn)
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM accounts")).scalar_one() == len(ledger.CHART_OF_ACCOUNTS)
