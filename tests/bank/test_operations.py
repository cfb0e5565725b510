"""Service-layer operations: idempotency, limits, rails, allocation, prepayment, golden journal lines."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from fieldbank.bank import ledger
from fieldbank.bank.close_day import close_day
from fieldbank.bank.domain import DomainError, Product
from fieldbank.bank.rails import ScriptedRail
from fieldbank.bank.service import BankService, IdempotencyConflict

DAY = dt.date(2026, 1, 1)


def _lines(engine, entry_id: str) -> list[tuple[str, int, int | None]]:  # noqa: ANN001
    with engine.connect() as conn:
        return [(ln.account_code, ln.amount_minor, ln.loan_id) for ln in ledger.entry_lines(conn, entry_id)]


def _books_ok(engine) -> None:  # noqa: ANN001
    with engine.connect() as conn:
        check = ledger.check_books(conn)
    assert check.ok, check


def _line(bank: BankService, limit: int = 100_000, key: str = "open") -> int:
    return bank.open_line(offer_id=f"offer-{key}", party_id="party-1", product_code="line-revolving",
                          amount_minor=limit, idempotency_key=key, on=DAY)["loan_id"]


def test_draw_golden_journal_lines(bank: BankService) -> None:
    loan_id = _line(bank)
    result = bank.draw(loan_id=loan_id, amount_minor=40_000, idempotency_key="draw-1", on=DAY)
    assert result["status"] == "settled"
    d = result["disbursement_id"]
    assert _lines(bank.engine, f"{d}:reserve") == [("LOANS_PRINCIPAL", 40_000, loan_id), ("CLEARING", -40_000, None)]
    assert _lines(bank.engine, f"{d}:settle") == [("CLEARING", 40_000, None), ("BORROWER_PAYMENT", -40_000, loan_id)]
    repaid = bank.repay(loan_id=loan_id, amount_minor=45_000, idempotency_key="repay-1", on=DAY)
    # nothing accrued yet: all to principal, 5,000 excess to the borrower's credit balance
    assert _lines(bank.engine, repaid["entry_id"]) == [
        ("CLEARING", 45_000, None), ("LOANS_PRINCIPAL", -40_000, loan_id), ("OVERPAYMENT", -5_000, loan_id)]
    loan = bank.loan(loan_id)
    assert (loan["principal_minor"], loan["credit_minor"], loan["payment_account_minor"]) == (0, 5_000, 40_000)
    _books_ok(bank.engine)


def test_same_key_same_result_and_conflict_on_other_payload(bank: BankService) -> None:
    loan_id = _line(bank)
    first = bank.draw(loan_id=loan_id, amount_minor=10_000, idempotency_key="k", on=DAY)
    again = bank.draw(loan_id=loan_id, amount_minor=10_000, idempotency_key="k", on=DAY)
    assert again["disbursement_id"] == first["disbursement_id"] and again["replayed"] is True
    assert bank.loan(loan_id)["principal_minor"] == 10_000
    with pytest.raises(IdempotencyConflict, match="already used"):
        bank.draw(loan_id=loan_id, amount_minor=20_000, idempotency_key="k", on=DAY)
    assert bank.loan(loan_id)["principal_minor"] == 10_000


def test_rejected_request_changes_no_state(bank: BankService) -> None:
    loan_id = _line(bank, limit=10_000)
    with bank.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM journal_lines")).scalar_one()
    with pytest.raises(DomainError) as err:
        bank.draw(loan_id=loan_id, amount_minor=10_001, idempotency_key="too-much", on=DAY)
    assert err.value.field == "amount_minor" and err.value.value == 10_001 and "available limit 10000" in err.value.rule
    with bank.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM journal_lines")).scalar_one() == before
        assert conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = 'too-much'")).scalar_one() == 0
    # the key is still free: a corrected request under it succeeds
    assert bank.draw(loan_id=loan_id, amount_minor=10_000, idempotency_key="too-much", on=DAY)["status"] == "settled"


def test_offer_opens_once(bank: BankService) -> None:
    _line(bank, key="a")
    with pytest.raises(DomainError, match="offer_id"):
        bank.open_line(offer_id="offer-a", party_id="party-1", product_code="line-revolving", amount_minor=5,
                       idempotency_key="b", on=DAY)


@pytest.mark.parametrize("script,status,executed", [
    (["fail"], "reversed", 0),
    (["timeout_lost"], "reversed", 0),  # timed out before executing: cancelled, then reversed
    (["timeout_done"], "settled", 1),  # executed but the answer was lost: status says settled
])
def test_rail_outcomes_never_lost_or_doubled(engine, script: list[str], status: str, executed: int) -> None:  # noqa: ANN001
    rail = ScriptedRail(script)
    bank = BankService(engine, rail=rail)
    bank.ensure_products()
    loan_id = _line(bank)
    result = bank.draw(loan_id=loan_id, amount_minor=30_000, idempotency_key="d", on=DAY)
    assert result["status"] == status
    retried = bank.draw(loan_id=loan_id, amount_minor=30_000, idempotency_key="d", on=DAY)
    assert retried["status"] == status
    assert sum(rail.executed.values()) == executed
    loan = bank.loan(loan_id)
    assert loan["principal_minor"] == 30_000 * executed
    assert loan["payment_account_minor"] == 30_000 * executed
    assert loan["pending_disbursement_minor"] == 0
    _books_ok(engine)


class CrashingRail(ScriptedRail):
    """Executes the transfer, then the process 'dies' before the bank hears back."""

    def __init__(self) -> None:
        super().__init__()
        self.crash_next = True

    def disburse(self, transfer_id: str, party_id: str, amount_minor: int):  # noqa: ANN201
        outcome = super().disburse(transfer_id, party_id, amount_minor)
        if self.crash_next:
            self.crash_next = False
            raise SystemError("process killed after the rail executed")
        return outcome


def test_retry_after_crash_mid_disbursement_pays_once(engine) -> None:  # noqa: ANN001
    rail = CrashingRail()
    bank = BankService(engine, rail=rail)
    bank.ensure_products()
    loan_id = _line(bank)
    with pytest.raises(SystemError):
        bank.draw(loan_id=loan_id, amount_minor=25_000, idempotency_key="d", on=DAY)
    assert bank.loan(loan_id)["pending_disbursement_minor"] == 25_000  # reserved, not lost
    result = bank.draw(loan_id=loan_id, amount_minor=25_000, idempotency_key="d", on=DAY)
    assert result["status"] == "settled"
    assert rail.executed == {result["disbursement_id"]: 1}
    loan = bank.loan(loan_id)
    assert (loan["principal_minor"], loan["disbursed_minor"], loan["pending_disbursement_minor"]) == (25_000, 25_000, 0)
    _books_ok(engine)


EQUAL = Product("eq-golden", "installment", "equal_principal", apr_bps=1_200, term_months=6, day_count="30/360",
                late_fee_minor=1_000, late_fee_grace_days=2)


def test_installment_golden_journal_and_allocation(bank: BankService) -> None:
    bank.ensure_products((EQUAL,))
    opened = bank.open_line(offer_id="o", party_id="p", product_code="eq-golden", amount_minor=600_000,
                            idempotency_key="open", on=DAY)
    loan_id = opened["loan_id"]
    d = opened["disbursement"]["disbursement_id"]
    assert _lines(bank.engine, f"{d}:reserve") == [("LOANS_PRINCIPAL", 600_000, loan_id), ("CLEARING", -600_000, None)]
    assert [(r["principal_due_minor"], r["interest_due_minor"]) for r in bank.schedule(loan_id)] == [
        (100_000, 6_000), (100_000, 5_000), (100_000, 4_000), (100_000, 3_000), (100_000, 2_000), (100_000, 1_000)]
    day = DAY
    for _ in range(31):  # close 2 Jan .. 1 Feb: the first period accrues exactly its 6,000
        day += dt.timedelta(days=1)
        close_day(bank.engine, day)
    # Linear spread of 6,000 over the 31 days of (1 Jan, 1 Feb]: day 1 = 6000*1//31 = 193, day 2 = 387 - 193 = 194.
    assert _lines(bank.engine, "close:2026-01-02:interest") == [("INTEREST_INCOME", -193, None), ("INTEREST_RECEIVABLE", 193, loan_id)]
    assert _lines(bank.engine, "close:2026-01-03:interest") == [("INTEREST_INCOME", -194, None), ("INTEREST_RECEIVABLE", 194, loan_id)]
    assert bank.loan(loan_id)["interest_minor"] == 6_000
    # Pay 110,000 on 2 Feb: 6,000 interest + 100,000 principal due; 4,000 excess to credit.
    paid = bank.repay(loan_id=loan_id, amount_minor=110_000, idempotency_key="r1", on=dt.date(2026, 2, 2))
    assert paid["paid"] == {"fees": 0, "interest": 6_000, "principal": 100_000} and paid["excess_minor"] == 4_000
    assert _lines(bank.engine, paid["entry_id"]) == [
        ("CLEARING", 110_000, None), ("INTEREST_RECEIVABLE", -6_000, loan_id),
        ("LOANS_PRINCIPAL", -100_000, loan_id), ("OVERPAYMENT", -4_000, loan_id)]
    loan = bank.loan(loan_id)
    assert (loan["principal_minor"], loan["credit_minor"], loan["oldest_unpaid_due_on"]) == (
        500_000, 4_000, dt.date(2026, 3, 1))
    _books_ok(bank.engine)


def test_prepay_shortens_term_and_full_payoff_closes(bank: BankService) -> None:
    bank.ensure_products((EQUAL,))
    loan_id = bank.open_line(offer_id="o", party_id="p", product_code="eq-golden", amount_minor=600_000,
                             idempotency_key="open", on=DAY)["loan_id"]
    # Prepay 200,000 on the opening day: nothing accrued, all principal, the last two installments go.
    bank.prepay(loan_id=loan_id, amount_minor=200_000, idempotency_key="p1", on=DAY)
    schedule = bank.schedule(loan_id)
    assert [r["principal_due_minor"] - r["principal_paid_minor"] for r in schedule] == [
        100_000, 100_000, 100_000, 100_000, 0, 0]
    # Periods with no accrued day yet (all of them, on the opening day) are repriced on the new
    # principal path 400k, 300k, 200k, 100k at 1 %/month.
    assert [r["interest_due_minor"] for r in schedule] == [4_000, 3_000, 2_000, 1_000, 0, 0]
    payoff = bank.loan(loan_id)["principal_minor"]
    bank.prepay(loan_id=loan_id, amount_minor=payoff, idempotency_key="p2", on=DAY)
    loan = bank.loan(loan_id)
    assert loan["status"] == "closed" and loan["closed_on"] == DAY and loan["principal_minor"] == 0
    _books_ok(bank.engine)


ANNUITY = Product("annuity-golden", "installment", "annuity", apr_bps=1_200, term_months=12, day_count="30/360")
SEASONAL = Product("seasonal-golden", "installment", "seasonal", apr_bps=1_000, term_months=9, day_count="ACT/360",
                   harvest_months=(9,))


@pytest.mark.parametrize("product,principal,opened,first_days", [
    # 12,000 of interest for (31 Jan, 28 Feb], 28 days: 12000*1//28 = 428, 12000*2//28 - 428 = 429.
    (ANNUITY, 1_200_000, dt.date(2026, 1, 31), [428, 429]),
    # 7,750 for (15 Jan, 15 Feb], 31 days: exactly 250 a day.
    (SEASONAL, 900_000, dt.date(2026, 1, 15), [250, 250]),
])
def test_golden_journal_lines_per_product(bank: BankService, product: Product, principal: int, opened: dt.date,
                                          first_days: list[int]) -> None:
    bank.ensure_products((product,))
    opened_result = bank.open_line(offer_id="o", party_id="p", product_code=product.code, amount_minor=principal,
                                   idempotency_key="open", on=opened)
    loan_id = opened_result["loan_id"]
    d = opened_result["disbursement"]["disbursement_id"]
    assert _lines(bank.engine, f"{d}:reserve") == [("LOANS_PRINCIPAL", principal, loan_id), ("CLEARING", -principal, None)]
    assert _lines(bank.engine, f"{d}:settle") == [("CLEARING", principal, None), ("BORROWER_PAYMENT", -principal, loan_id)]
    for k, amount in enumerate(first_days, start=1):
        day = opened + dt.timedelta(days=k)
        close_day(bank.engine, day)
        assert _lines(bank.engine, f"close:{day}:interest") == [
            ("INTEREST_INCOME", -amount, None), ("INTEREST_RECEIVABLE", amount, loan_id)]
    _books_ok(bank.engine)
