"""Bank routes: open a line or loan from an accepted offer, draw, repay, prepay, reverse a
payment, statement, schedule, trial balance, portfolio. Every POST requires an
`Idempotency-Key` header: the same key and body return the same result (200, `replayed`
true), the same key with another body is a 409."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from fieldbank.bank import domain, ledger
from fieldbank.bank.reports import portfolio_snapshot
from fieldbank.bank.service import BankService

router = APIRouter(prefix="/bank", tags=["bank"])

AmountMinor = Annotated[StrictInt, Field(ge=1, le=domain.MAX_AMOUNT_MINOR, description="minor units")]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)]
LoanId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # a BIGINT id; larger would overflow the driver (500)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenLineIn(_Body):
    offer_id: str = Field(min_length=1, max_length=80)
    party_id: str = Field(min_length=1, max_length=80)
    product_code: str = Field(min_length=1, max_length=40)
    amount_minor: AmountMinor = Field(description="credit limit (revolving) or principal (installment)")
    apr_bps: Annotated[StrictInt, Field(ge=0, le=domain.MAX_APR_BPS)] | None = None
    on: dt.date | None = Field(None, description="value date; default: the open business date")


class AmountIn(_Body):
    amount_minor: AmountMinor
    on: dt.date | None = None


class ReverseIn(_Body):
    on: dt.date | None = None


def _bank(request: Request) -> BankService:
    return request.app.state.bank


@router.post("/lines", status_code=201)
def open_line(body: OpenLineIn, request: Request, key: IdempotencyKey) -> dict[str, Any]:
    """Open a credit line (limit) or an installment loan (principal, disbursed at once)."""
    return _bank(request).open_line(idempotency_key=key, **body.model_dump())


@router.post("/loans/{loan_id}/draws")
def draw(loan_id: LoanId, body: AmountIn, request: Request, key: IdempotencyKey) -> dict[str, Any]:
    return _bank(request).draw(loan_id=loan_id, idempotency_key=key, **body.model_dump())


@router.post("/loans/{loan_id}/repayments")
def repay(loan_id: LoanId, body: AmountIn, request: Request, key: IdempotencyKey) -> dict[str, Any]:
    return _bank(request).repay(loan_id=loan_id, idempotency_key=key, **body.model_dump())


@router.post("/loans/{loan_id}/prepayments")
def prepay(loan_id: LoanId, body: AmountIn, request: Request, key: IdempotencyKey) -> dict[str, Any]:
    return _bank(request).prepay(loan_id=loan_id, idempotency_key=key, **body.model_dump())


@router.post("/entries/{entry_id}/reversal")
def reverse(entry_id: Annotated[str, Path(max_length=120)], body: ReverseIn, request: Request,
            key: IdempotencyKey) -> dict[str, Any]:
    return _bank(request).reverse_payment(entry_id=entry_id, idempotency_key=key, **body.model_dump())


@router.get("/loans/{loan_id}")
def loan(loan_id: LoanId, request: Request) -> dict[str, Any]:
    return _bank(request).loan(loan_id)


@router.get("/loans/{loan_id}/schedule")
def schedule(loan_id: LoanId, request: Request) -> list[dict[str, Any]]:
    return _bank(request).schedule(loan_id)


@router.get("/loans/{loan_id}/statement")
def statement(loan_id: LoanId, request: Request) -> dict[str, Any]:
    return _bank(request).statement(loan_id)


@router.get("/trial-balance")
def trial_balance(request: Request) -> dict[str, Any]:
    with _bank(request).engine.connect() as conn:
        rows = ledger.trial_balance(conn)
    return {"accounts": rows, "total_minor": sum(r["balance_minor"] for r in rows)}


@router.get("/portfolio")
def portfolio(request: Request) -> dict[str, Any]:
    with _bank(request).engine.connect() as conn:
        return portfolio_snapshot(conn)
