"""The operations dashboard (role `ops`): portfolio KPIs and charts, drift, the decision log,
the model report, and the close-of-day button."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from fieldbank.bank.close_day import CloseDayError, close_days_through
from fieldbank.monitor import drift as drift_mod
from fieldbank.monitor.portfolio import portfolio_view
from fieldbank.web import auth, charts
from fieldbank.web.render import render

router = APIRouter(include_in_schema=False)


def _settings(request: Request):  # noqa: ANN202
    return request.app.state.settings


def champion_report(request: Request) -> dict[str, Any] | None:
    """The champion model's name, version and whether its HTML report exists."""
    from fieldbank.risk import registry

    champion = registry.get_champion(_settings(request).models_dir)
    if champion is None:
        return None
    name, version = champion
    folder = registry.folder_of(_settings(request).models_dir, name, version)
    return {"name": name, "version": version, "has_report": (folder / "report.html").exists()}


def decision_summary(request: Request) -> dict[str, Any] | None:
    """Decision-log aggregates from the decision service, when it runs in this app."""
    from fieldbank.web import decisions as decisions_view

    return decisions_view.summary(request.app)


def _book_version(conn) -> tuple:  # noqa: ANN001
    """Changes whenever the book does: a new journal entry or a closed day (entries are
    append-only, so their count only grows)."""
    from sqlalchemy import text

    return tuple(conn.execute(text(
        "SELECT (SELECT count(*) FROM journal_entries), "
        "(SELECT max(business_date) FROM close_day_runs WHERE status = 'done')")).one())


def cached_portfolio_view(request: Request, summary: dict[str, Any] | None) -> dict[str, Any]:
    """The portfolio view, recomputed only when the book changed since the last request."""
    with request.app.state.bank.engine.connect() as conn:
        version = (_book_version(conn), json.dumps(summary, sort_keys=True, default=str))
        cached = getattr(request.app.state, "portfolio_view_cache", None)
        if cached is not None and cached[0] == version:
            return cached[1]
        view = portfolio_view(conn, summary)
    request.app.state.portfolio_view_cache = (version, view)
    return view


@router.get("/ops", response_class=HTMLResponse)
def dashboard(request: Request, user: auth.User = Depends(auth.ops)) -> Response:
    started = time.perf_counter()
    summary = decision_summary(request)
    view = cached_portfolio_view(request, summary)
    drift = drift_mod.load_or_compute_drift(_settings(request), compute=False)
    figures = {"buckets": charts.buckets_over_time(view["history"]),
               "states": charts.loans_by_state(view["history"]),
               "vintages": charts.vintage_curves(view["vintages"]),
               "rolls": charts.roll_rate_heatmap(view["roll_rates"])}
    if summary and summary.get("grades"):
        figures["grades"] = charts.grades_chart(summary["grades"])
    if drift:
        figures["score_psi"] = charts.score_psi_chart(drift)
        figures["feature_psi"] = charts.feature_psi_chart(drift)
    return render(request, "dashboard.html", {
        "kpis": view["kpis"], "figures_json": json.dumps(figures).replace("<", "\\u003c"), "figure_ids": list(figures),
        "drift": drift, "grades": (summary or {}).get("grades", []), "champion": champion_report(request),
        "notice": request.query_params.get("done"),
        "build_ms": round(1000 * (time.perf_counter() - started)),
    })


@router.post("/ops/drift")
def compute_drift(request: Request, csrf: str = Form(""), user: auth.User = Depends(auth.ops)) -> Response:
    """Compute (and cache) the drift of the current champion on the newest portrait."""
    auth.check_csrf(request, csrf)
    try:
        drift_mod.load_or_compute_drift(_settings(request), compute=True)
    except (LookupError, FileNotFoundError, ValueError) as e:
        raise HTTPException(status_code=409, detail=f"drift: {e}") from None
    return RedirectResponse("/ops?done=drift", status_code=303)


@router.post("/ops/close-day")
def close_day(request: Request, csrf: str = Form(""), user: auth.User = Depends(auth.ops)) -> Response:
    """Close the open business date (interest, billing, delinquency, fees, write-offs, allowance)."""
    auth.check_csrf(request, csrf)
    bank = request.app.state.bank
    with bank.engine.connect() as conn:
        day: dt.date = bank.business_date(conn)
    try:
        close_days_through(bank.engine, day, lake_dir=_settings(request).lake_dir)
    except CloseDayError as e:
        raise HTTPException(status_code=409, detail=f"close-day {day}: {e}") from None
    return RedirectResponse(f"/ops?done=closed+{day}", status_code=303)


@router.get("/ops/models/champion/report")
def model_report(request: Request, user: auth.User = Depends(auth.ops)) -> Response:
    from fieldbank.risk import registry

    champion = registry.get_champion(_settings(request).models_dir)
    if champion is None:
        raise HTTPException(status_code=404, detail="no champion model yet: fieldbank train, then models promote")
    path = registry.folder_of(_settings(request).models_dir, *champion) / "report.html"
    if not path.exists():
        raise HTTPException(status_code=404, detail=f"{path} does not exist")
    return FileResponse(path, media_type="text/html")


@router.get("/ops/decisions", response_class=HTMLResponse)
def decisions_page(request: Request, before: str | None = None, user: auth.User = Depends(auth.ops)) -> Response:
    """The decision log, newest first, 50 a page, each with its reasons."""
    from fieldbank.monitor.decisions import decision_log

    if before is not None and len(before) > 40:
        raise HTTPException(status_code=422, detail="before: at most 40 characters (a created_at timestamp)")
    with request.app.state.bank.engine.connect() as conn:
        rows = decision_log(conn, limit=50, before=before)
    return render(request, "decisions.html", {"rows": rows, "next_before": str(rows[-1]["created_at"]) if len(rows) == 50
                                              else None})


@router.get("/ops/decisions/{decision_id}", response_class=HTMLResponse)
def decision_page(decision_id: str, request: Request, user: auth.User = Depends(auth.ops)) -> Response:
    """One decision and why: inputs, facts, every rule's outcome, model and policy versions."""
    from fieldbank.bank.service import NotFound

    service = request.app.state.decisions
    if service is None:
        raise HTTPException(status_code=503, detail="the decision service is not running in this server")
    try:
        record = service.get(decision_id)
    except NotFound:
        raise HTTPException(status_code=404, detail=f"decision {decision_id} not found") from None
    return render(request, "decision.html", {"r": record, "d": record["decision"],
                                             "record_json": json.dumps(record, indent=1, default=str)})
