"""The borrower's pages: sign in, loans, schedule, draw, repay, statement, apply and accept.

Every page about a loan checks that the loan is the signed-in party's own (403 otherwise).
Every form carries the session's CSRF token and a one-time form key; the form key becomes the
operation's Idempotency-Key, so a double submit never draws or pays twice.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from fieldbank.bank.domain import DomainError
from fieldbank.bank.service import LOANS, BankService, NotFound, owed_components
from fieldbank.web import auth
from fieldbank.web.money import AmountError, parse_major
from fieldbank.web.render import render

router = APIRouter(include_in_schema=False)
MAX_STATEMENT_LINES = 20_000  # a download is bounded like every other read
RECENT_LINES_SHOWN = 12
FORM_KEY_MAX = 64


def _bank(request: Request) -> BankService:
    return request.app.state.bank


def _secret(request: Request) -> bytes:
    return request.app.state.web_secret


def form_key() -> str:
    return uuid.uuid4().hex


def _checked_form_key(value: str) -> str:
    if not value or len(value) > FORM_KEY_MAX or not value.isalnum():
        raise HTTPException(status_code=422, detail="form_key: missing or malformed; reload the page")
    return value


# ---- sign in ---------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    user = auth.current_user(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/ops" if user.role == "ops" else "/me", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, user: str = "", code: str = "", role: str = "borrower", next: str = "") -> Response:
    return render(request, "login.html", {"user_value": user[:80], "code_value": code[:auth.CODE_LENGTH],
                                          "role_value": role if role in auth.ROLES else "borrower",
                                          "next": next if next.startswith("/") else "", "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, user: str = Form(""), code: str = Form(""), role: str = Form("borrower"),
          next: str = Form("")) -> Response:
    failed = int(request.session.get("failed_logins", 0))
    if failed >= auth.MAX_FAILED_LOGINS_PER_SESSION:
        raise HTTPException(status_code=429, detail="too many failed sign-ins in this session")
    signed_in = auth.check_login(_secret(request), role, user.strip(), code.strip())
    if signed_in is None:
        request.session["failed_logins"] = failed + 1
        return render(request, "login.html", {"user_value": user[:80], "code_value": "", "role_value": role,
                                              "next": next, "error": "That ID and access code do not match."},
                      status_code=401)
    auth.sign_in(request, signed_in)
    target = next if next.startswith("/") and not next.startswith("//") else ("/ops" if role == "ops" else "/me")
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    auth.check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# ---- the borrower's loans --------------------------------------------------------------------


def _own_loan(request: Request, user: auth.User, loan_id: int) -> dict[str, Any]:
    try:
        loan = _bank(request).loan(loan_id)
    except NotFound:
        raise HTTPException(status_code=404, detail=f"loan {loan_id} not found") from None
    if loan["party_id"] != user.subject:
        raise HTTPException(status_code=403, detail=f"loan {loan_id} is not yours")
    return loan


def party_loans(bank: BankService, party_id: str) -> list[dict[str, Any]]:
    with bank.engine.connect() as conn:
        rows = conn.execute(select(LOANS).where(LOANS.c.party_id == party_id)
                            .order_by(LOANS.c.loan_id.desc()).limit(100)).mappings().all()
    return [dict(r) for r in rows]


@router.get("/me", response_class=HTMLResponse)
def me(request: Request, user: auth.User = Depends(auth.borrower)) -> Response:
    bank = _bank(request)
    with bank.engine.connect() as conn:
        business_date = bank.business_date(conn)
    loans = party_loans(bank, user.subject)
    from fieldbank.web.apply import open_offer

    with bank.engine.connect() as conn:
        offer = open_offer(conn, user.subject, dt.datetime.now(dt.UTC))
    return render(request, "me.html", {"loans": loans, "business_date": business_date, "offer": offer,
                                       "can_apply": request.app.state.decisions is not None})


def _loan_context(request: Request, loan: dict[str, Any]) -> dict[str, Any]:
    bank = _bank(request)
    with bank.engine.connect() as conn:
        business_date = bank.business_date(conn)
        row = conn.execute(select(LOANS).where(LOANS.c.loan_id == loan["loan_id"])).one()
        owed = owed_components(conn, row, business_date) if loan["status"] == "active" else {}
    statement = bank.statement(loan["loan_id"], max_entries=MAX_STATEMENT_LINES)
    recent = borrower_activity(statement["lines"])
    available = loan["limit_minor"] - loan["principal_minor"] - loan["pending_disbursement_minor"] \
        if loan["kind"] == "revolving" and loan["status"] == "active" else 0
    return {"loan": loan, "schedule": bank.schedule(loan["loan_id"]), "business_date": business_date,
            "owed": owed, "owed_total_minor": sum(owed.values()),
            "outstanding_minor": loan["principal_minor"] + loan["interest_minor"] + loan["fees_minor"],
            "available_minor": max(0, available), "recent": recent[-RECENT_LINES_SHOWN:][::-1],
            "form_key": form_key(), "error": None, "notice": request.query_params.get("done")}


RECEIVABLES = ("LOANS_PRINCIPAL", "INTEREST_RECEIVABLE", "FEES_RECEIVABLE")
HIDDEN_KINDS = ("accrual", "penalty_accrual", "allowance")  # nightly steps, shown as balances instead
KIND_LABELS = {"draw_reserve": "draw", "draw_reversal": "draw failed, reversed", "repay": "repayment",
               "prepay": "prepayment", "late_fees": "late fee", "write_off": "written off",
               "credit_applied": "credit balance applied", "reversal": "payment reversed"}


def borrower_activity(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the borrower recognises, one row per entry: money drawn, paid, fees charged,
    written off; `owed_change_minor` is the entry's effect on what they owe."""
    rows: dict[str, dict[str, Any]] = {}
    for ln in lines:
        if ln["kind"] in HIDDEN_KINDS or ln["account_code"] not in RECEIVABLES:
            continue
        row = rows.setdefault(ln["entry_id"], {"business_date": ln["business_date"],
                                                "kind": KIND_LABELS.get(ln["kind"], ln["kind"].replace("_", " ")),
                                                "owed_change_minor": 0})
        row["owed_change_minor"] += ln["amount_minor"]
    return list(rows.values())


@router.get("/me/loans/{loan_id}", response_class=HTMLResponse)
def loan_page(loan_id: int, request: Request, user: auth.User = Depends(auth.borrower)) -> Response:
    loan = _own_loan(request, user, loan_id)
    return render(request, "loan.html", _loan_context(request, loan))


def _loan_action(request: Request, user: auth.User, loan_id: int, action: str, amount: str, key: str,
                 csrf: str) -> Response:
    auth.check_csrf(request, csrf)
    loan = _own_loan(request, user, loan_id)
    key = _checked_form_key(key)
    bank = _bank(request)
    try:
        amount_minor = parse_major("amount", amount)
        operation = bank.draw if action == "draw" else bank.repay
        operation(loan_id=loan_id, amount_minor=amount_minor, idempotency_key=f"web:{action}:{user.subject}:{key}")
    except (AmountError, DomainError) as e:
        context = _loan_context(request, _bank(request).loan(loan_id))
        context["error"] = f"{action}: {e.field} = {e.value!r}: {e.rule}"
        return render(request, "loan.html", context, status_code=422)
    return RedirectResponse(f"/me/loans/{loan['loan_id']}?done={action}", status_code=303)


@router.post("/me/loans/{loan_id}/draw")
def draw(loan_id: int, request: Request, amount: str = Form(""), form_key: str = Form(""), csrf: str = Form(""),
         user: auth.User = Depends(auth.borrower)) -> Response:
    return _loan_action(request, user, loan_id, "draw", amount, form_key, csrf)


@router.post("/me/loans/{loan_id}/repay")
def repay(loan_id: int, request: Request, amount: str = Form(""), form_key: str = Form(""), csrf: str = Form(""),
          user: auth.User = Depends(auth.borrower)) -> Response:
    return _loan_action(request, user, loan_id, "repay", amount, form_key, csrf)


@router.get("/me/loans/{loan_id}/statement.csv")
def statement_csv(loan_id: int, request: Request, user: auth.User = Depends(auth.borrower)) -> Response:
    """The loan's journal lines as CSV (amounts in minor units and in major units)."""
    _own_loan(request, user, loan_id)
    statement = _bank(request).statement(loan_id, max_entries=MAX_STATEMENT_LINES)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["business_date", "entry_id", "kind", "account_code", "amount_minor", "amount"])
    for ln in statement["lines"]:
        writer.writerow([ln["business_date"], ln["entry_id"], ln["kind"], ln["account_code"], ln["amount_minor"],
                         f"{ln['amount_minor'] / 100:.2f}"])
    name = f"fieldbank-loan-{loan_id}-statement.csv"
    return Response(out.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})

