"""Decision routes: apply, replay a decision, accept an offer, service status.

Machine clients authenticate with `X-API-Key` (keys from settings `api_keys`; compared in
constant time). With no keys configured the routes are open (development), and the app logs
a warning at start. Every POST requires an `Idempotency-Key`: the same key and body return
the stored decision (200, `replayed` true), the same key with another body is a 409.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response

from fieldbank.decision.schemas import AcceptIn, AcceptOut, ApplicationIn, DecisionOut
from fieldbank.decision.service import DecisionService

IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=200)]
DecisionId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^D[0-9a-f]{20}$")]


class ApiKeyError(Exception):
    def __init__(self, given: str | None) -> None:
        super().__init__("a valid X-API-Key header is required" if given is None else "the X-API-Key is not valid")
        self.given = given


async def require_api_key(request: Request, x_api_key: Annotated[str | None, Header(alias="X-API-Key")] = None) -> None:
    # async: FastAPI runs a plain `def` dependency on a worker thread, a hand-off per request
    keys: list[str] = request.app.state.settings.api_keys
    if not keys:
        return
    if x_api_key is None or not any(hmac.compare_digest(x_api_key.encode(), k.encode()) for k in keys):
        raise ApiKeyError(x_api_key)


router = APIRouter(prefix="/v1", tags=["decisions"], dependencies=[Depends(require_api_key)],
                   responses={401: {"description": "missing or invalid X-API-Key"}})


def _decisions(request: Request) -> DecisionService:
    return request.app.state.decisions


def _server_timing(response: Response, steps: dict[str, float]) -> None:
    if steps:
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v}" for k, v in steps.items())


@router.post("/applications", status_code=201, response_model=DecisionOut,
             responses={200: {"description": "a replay of the decision stored under this Idempotency-Key"},
                        409: {"description": "the Idempotency-Key was used for a different application"},
                        422: {"description": "the application breaks a rule: field, value and rule named"}})
async def apply(body: ApplicationIn, request: Request, key: IdempotencyKey) -> Response:
    """Decide a credit application: approve / decline / refer with limit, APR, daily rate,
    expiry and plain-language reasons. `Server-Timing` gives the per-step milliseconds."""
    applied = await _decisions(request).apply_async(body, key)
    # The decision is already a validated model: serialise it once, skip FastAPI's second pass.
    response = Response(applied.decision.model_dump_json(), status_code=200 if applied.decision.replayed else 201,
                        media_type="application/json")
    _server_timing(response, applied.steps_ms)
    return response


@router.get("/decisions/{decision_id}")
def get_decision(decision_id: DecisionId, request: Request) -> dict[str, Any]:
    """The decision and why: inputs, facts, portrait as_of, model and policy versions, the
    score, every rule's outcome, per-step timings, and the acceptance if any."""
    return _decisions(request).get(decision_id)


@router.post("/offers/{decision_id}/accept", status_code=201, response_model=AcceptOut)
def accept(decision_id: DecisionId, request: Request, response: Response, key: IdempotencyKey,
           body: AcceptIn | None = None) -> AcceptOut:
    """Accept an approved, unexpired offer: the bank core opens the credit line (or loan) with
    the offer's limit and APR."""
    out = _decisions(request).accept(decision_id, key, body.amount_minor if body else None)
    if out.replayed:
        response.status_code = 200
    return out


@router.get("/status")
def status(request: Request) -> dict[str, Any]:
    """Whether the decision service has its policy, blocklist, portrait and model (and if not, why)."""
    return _decisions(request).status()
