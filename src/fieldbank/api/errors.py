"""Error responses: every 422 names the field, the value and the rule; a rejected request
changes no state (the service rolls back)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from fieldbank.api.decision_routes import ApiKeyError
from fieldbank.bank.domain import DomainError
from fieldbank.bank.service import IdempotencyConflict, NotFound
from fieldbank.decision.writer import DecisionLogBusy


def _error(field: str, value: Any, rule: str) -> dict[str, Any]:
    return {"field": field, "value": value, "rule": rule}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            location = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header")]
            value = e.get("input")
            if isinstance(value, (dict, list)):
                value = None if location else value
            errors.append(_error(".".join(location) or "body", value, e.get("msg", "invalid")))
        return JSONResponse(status_code=422, content={"errors": errors})

    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        value = exc.value if isinstance(exc.value, (int, float, str, bool, type(None))) else str(exc.value)
        return JSONResponse(status_code=422, content={"errors": [_error(exc.field, value, exc.rule)]})

    @app.exception_handler(IdempotencyConflict)
    async def _conflict(_request: Request, exc: IdempotencyConflict) -> JSONResponse:
        return JSONResponse(status_code=409, content={"errors": [_error("Idempotency-Key", exc.key, str(exc))]})

    @app.exception_handler(ApiKeyError)
    async def _api_key(_request: Request, exc: ApiKeyError) -> JSONResponse:
        return JSONResponse(status_code=401, content={"errors": [_error("X-API-Key", None, str(exc))]})

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"errors": [_error("path", None, str(exc))]})

    @app.exception_handler(DecisionLogBusy)
    async def _busy(_request: Request, exc: DecisionLogBusy) -> JSONResponse:
        # Not decided (or not known to be committed): retrying with the same key is safe.
        return JSONResponse(status_code=503, headers={"Retry-After": "1"},
                            content={"errors": [_error("Idempotency-Key", None, str(exc))]})
