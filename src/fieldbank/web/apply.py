"""Apply and accept: the borrower's three-minute application. The decision (limit, APR, daily
rate, total cost, reasons) comes back in the same page; an approved offer is accepted there."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from sqlalchemy import text

from fieldbank.bank import domain
from fieldbank.bank.domain import DomainError
from fieldbank.bank.service import IdempotencyConflict, NotFound
from fieldbank.web import auth
from fieldbank.web.borrower import _checked_form_key
from fieldbank.web.borrower import form_key as new_form_key
from fieldbank.web.money import AmountError, parse_major
from fieldbank.web.render import render

router = APIRouter(include_in_schema=False)
TERMS_DAYS = (90, 180, 365, 540, 730)
PURPOSES = {"working_capital": "Working capital", "inventory": "Stock for my shop", "equipment": "Equipment",
            "agri_inputs": "Seeds, fertiliser, feed", "household": "Household needs", "education": "School fees",
            "health": "Health", "other": "Something else"}
DAYS_PER_YEAR = 365


def _service(request: Request):  # noqa: ANN202
    service = request.app.state.decisions
    if service is None:
        raise HTTPException(status_code=503, detail="the decision service is not running in this server")
    return service


def total_cost_minor(amount_minor: int, apr_bps: int, term_days: int) -> int:
    """Interest on `amount_minor` used for the whole term at the offer's APR, simple, ACT/365,
    rounded half up: what the borrower pays on top of the amount if they draw it all at once
    and repay it at the end (paying earlier costs less)."""
    assert amount_minor >= 0 and apr_bps >= 0 and term_days > 0
    return domain.half_up_div(amount_minor * apr_bps * term_days, domain.BPS_PER_UNIT * DAYS_PER_YEAR)


def offer_view(decision: dict[str, Any], requested_minor: int | None) -> dict[str, Any]:
    """The decision as the page shows it: money in minor units, costs computed for the amount the
    borrower can take (the smaller of what they asked and the limit)."""
    view = dict(decision)
    view["expires_on"] = str(decision["expires_at"])[:10] if decision.get("expires_at") else None
    if decision["outcome"] == "approve" and decision.get("apr_bps") is not None:
        amount = min(requested_minor or decision["limit_minor"], decision["limit_minor"])
        view["requested_minor"] = requested_minor
        view["cost_amount_minor"] = amount
        view["total_cost_minor"] = total_cost_minor(amount, decision["apr_bps"], decision["term_days"])
        view["total_repay_minor"] = amount + view["total_cost_minor"]
        view["daily_rate_pct"] = (decision["daily_rate_ppm"] or 0) / 10_000
    return view


def open_offer(conn, party_id: str, now: dt.datetime) -> dict[str, Any] | None:  # noqa: ANN001
    """The party's newest approved offer that has not expired and was not accepted, if any."""
    from fieldbank.monitor.decisions import has_decisions

    if not has_decisions(conn):
        return None
    row = conn.execute(text(
        "SELECT d.response_json FROM decisions d LEFT JOIN decision_acceptances a ON a.decision_id = d.decision_id "
        "WHERE d.party_id = :p AND d.outcome = 'approve' AND a.decision_id IS NULL AND d.expires_at > :now "
        "ORDER BY d.created_at DESC LIMIT 1"), {"p": party_id, "now": now}).first()
    return offer_view(json.loads(row[0]), None) if row else None


def _own_decision(request: Request, user: auth.User, decision_id: str) -> dict[str, Any]:
    try:
        record = _service(request).get(decision_id)
    except NotFound:
        raise HTTPException(status_code=404, detail=f"decision {decision_id} not found") from None
    if record["decision"]["party_id"] != user.subject:
        raise HTTPException(status_code=403, detail=f"decision {decision_id} is not yours")
    return record


def _form(values: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"terms": TERMS_DAYS, "purposes": PURPOSES, "values": values or {"term_days": 365}, "form_key": new_form_key()}


@router.get("/me/apply", response_class=HTMLResponse)
def apply_page(request: Request, user: auth.User = Depends(auth.borrower)) -> Response:
    """The pre-approved offer when there is one (accept it, or apply again), else the form."""
    _service(request)
    with request.app.state.bank.engine.connect() as conn:
        offer = open_offer(conn, user.subject, dt.datetime.now(dt.UTC))
    return render(request, "apply.html", {**_form(), "decision": offer, "accept_key": new_form_key(),
                                          "preapproved": offer is not None})


@router.post("/me/apply", response_class=HTMLResponse)
def apply(request: Request, amount: str = Form(""), term_days: str = Form(""), purpose: str = Form(""),
          consent: str = Form(""), form_key: str = Form(""), csrf: str = Form(""),
          user: auth.User = Depends(auth.borrower)) -> Response:
    from fieldbank.decision.schemas import ApplicationIn

    auth.check_csrf(request, csrf)
    key = _checked_form_key(form_key)
    values = {"amount": amount, "term_days": term_days, "purpose": purpose, "consent": consent == "yes"}
    try:
        requested = parse_major("amount", amount)
        if not term_days.isdigit():
            raise AmountError("term_days", term_days, f"one of {', '.join(map(str, TERMS_DAYS))} days")
        if consent != "yes":
            raise AmountError("consent", consent or "no", "tick the box to let the bank use your data for this decision")
        application = ApplicationIn(party_id=user.subject, consent=True, requested_amount_minor=requested,
                                    term_days=int(term_days), purpose=purpose)
        decision = _service(request).apply(application, idempotency_key=f"web:apply:{user.subject}:{key}")
    except AmountError as e:
        return render(request, "apply.html", {**_form(values), "decision": None,
                                              "error": f"{e.field} = {e.value!r}: {e.rule}"}, status_code=422)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "application"
        return render(request, "apply.html", {**_form(values), "decision": None,
                                              "error": f"{field} = {first.get('input')!r}: {first.get('msg')}"},
                      status_code=422)
    except (DomainError, IdempotencyConflict) as e:
        return render(request, "apply.html", {**_form(values), "decision": None, "error": str(e)}, status_code=422)
    return render(request, "apply.html", {**_form(values), "decision": offer_view(decision.model_dump(), requested),
                                          "accept_key": new_form_key()})


@router.post("/me/decisions/{decision_id}/accept")
def accept(decision_id: str, request: Request, form_key: str = Form(""), csrf: str = Form(""),
           user: auth.User = Depends(auth.borrower)) -> Response:
    auth.check_csrf(request, csrf)
    key = _checked_form_key(form_key)
    _own_decision(request, user, decision_id)
    try:
        accepted = _service(request).accept(decision_id, idempotency_key=f"web:accept:{user.subject}:{key}")
    except (DomainError, IdempotencyConflict) as e:
        raise HTTPException(status_code=422, detail=str(e)) from None
    return RedirectResponse(f"/me/loans/{accepted.loan_id}?done=accepted", status_code=303)

