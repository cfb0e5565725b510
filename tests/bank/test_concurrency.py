"""16 threads drawing and repaying on the same credit line: no lost update, no overdraw,
books balance. Runs on PostgreSQL (row locks) and SQLite (serialised writers)."""

from __future__ import annotations

import datetime as dt
import random
import threading

from fieldbank.bank import ledger
from fieldbank.bank.domain import DomainError
from fieldbank.bank.service import BankService

DAY = dt.date(2026, 1, 1)
THREADS = 16
OPS_PER_THREAD = 12
LIMIT_MINOR = 100_000


def test_sixteen_threads_on_one_line(engine) -> None:  # noqa: ANN001
    bank = BankService(engine)
    bank.ensure_products()
    loan_id = bank.open_line(offer_id="o", party_id="p", product_code="line-revolving", amount_minor=LIMIT_MINOR,
                             idempotency_key="open", on=DAY)["loan_id"]
    drawn: list[int] = []
    repaid_principal: list[int] = []
    excess: list[int] = []
    rejected: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for op in range(OPS_PER_THREAD):
            key = f"t{seed}-{op}"
            try:
                if rng.random() < 0.6:
                    result = bank.draw(loan_id=loan_id, amount_minor=rng.randint(1_000, 30_000), idempotency_key=key, on=DAY)
                    drawn.append(result["amount_minor"])
                    # the same request retried concurrently by a client: never a second disbursement
                    again = bank.draw(loan_id=loan_id, amount_minor=result["amount_minor"], idempotency_key=key, on=DAY)
                    assert again["disbursement_id"] == result["disbursement_id"] and again["replayed"]
                else:
                    result = bank.repay(loan_id=loan_id, amount_minor=rng.randint(1_000, 20_000), idempotency_key=key, on=DAY)
                    repaid_principal.append(result["paid"]["principal"])
                    excess.append(result["excess_minor"])
            except DomainError as err:
                assert err.field == "amount_minor"  # over the available limit: refused, nothing booked
                rejected.append(key)
            except BaseException as err:  # noqa: BLE001
                errors.append(err)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    loan = bank.loan(loan_id)
    assert loan["principal_minor"] == sum(drawn) - sum(repaid_principal)  # no lost update
    assert 0 <= loan["principal_minor"] <= LIMIT_MINOR
    assert loan["credit_minor"] == sum(excess)
    assert loan["disbursed_minor"] == sum(drawn)
    with engine.connect() as conn:
        check = ledger.check_books(conn)
    assert check.ok, check
    assert len(drawn) + len(repaid_principal) + len(rejected) == THREADS * OPS_PER_THREAD
    # The limit was binding (demand far above it) and still never exceeded.
    assert drawn and repaid_principal and rejected
