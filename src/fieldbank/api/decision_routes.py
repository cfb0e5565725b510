"""Decision routes: apply, replay a decision, accept an offer, service status.

Machine clients authenticate with `X-API-Key` (keys from settings `api_keys`; compared in
constant time). With no keys configured the routes are open (development), and the app logs
a warning at start. Every POST requires an `Idempotency-Key`: the same key and body return
the stored decision (200, `replayed` true), the same key with another body is a 409.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import StringConstraints, TypeAdapter, ValidationError

from fieldbank.decision.schemas import AcceptIn, AcceptOut, ApplicationIn, DecisionOut
from fieldbank.decision.service import DecisionService

MAX_IDEMPOTENCY_KEY = 200
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY)]
_KEY_RULE = TypeAdapter(Annotated[str, StringConstraints(min_length=1, max_length=MAX_IDEMPOTENCY_KEY)])
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


UNAUTHORIZED = {401: {"description": "missing or invalid X-API-Key"}}
router = APIRouter(prefix="/v1", tags=["decisions"], dependencies=[Depends(require_api_key)], responses=UNAUTHORIZED)


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


async def _apply_direct(request: Request, endpoint: Callable[..., Coroutine[Any, Any, Response]]) -> Response:
    """What FastAPI does before calling `apply`, done directly: the API key, the
    Idempotency-Key header and the JSON body checked with the same rules and the same models,
    errors raised as the same RequestValidationError (so the same 422 body). FastAPI's generic
    per-request work (solving dependencies, json.loads then validating the dict) cost ~0.4 ms
    of a decision's ~3 ms CPU (in-process, interleaved rounds)."""
    await require_api_key(request, request.headers.get("x-api-key"))
    key = request.headers.get("idempotency-key")
    errors: list[dict[str, Any]] = []
    try:
        _KEY_RULE.validate_python(key)
    except ValidationError as e:
        errors += [{**err, "loc": ("header", "Idempotency-Key")} for err in e.errors(include_url=False)]
    body = None
    raw = await request.body()
    if not _is_json(request.headers.get("content-type")):
        errors.append({"type": "content_type", "loc": ("body",), "input": None,
                       "msg": "the body must be JSON, sent with Content-Type: application/json"})
    else:
        try:
            body = ApplicationIn.model_validate_json(raw)
        except ValidationError as e:
            for err in e.errors(include_url=False):  # malformed JSON: the input is the raw bytes
                given = err["input"].decode("utf-8", "replace") if isinstance(err["input"], bytes) else err["input"]
                errors.append({**err, "loc": ("body", *err["loc"]), "input": given})
    if errors:
        raise RequestValidationError(errors, body=raw)
    assert body is not None and key is not None
    return await endpoint(body, request, key)


class _ApplyRoute(APIRoute):
    """FastAPI documents the route from its endpoint's signature and the router's API-key
    dependency (OpenAPI, schemathesis); requests go through `_apply_direct`, which checks what
    they declare and then calls the endpoint."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        return functools.partial(_apply_direct, endpoint=self.endpoint)


def _decisions(request: Request) -> DecisionService:
    return request.app.state.decisions


def _server_timing(response: Response, steps: dict[str, float]) -> None:
    if steps:
        response.headers["Server-Timing"] = ", ".join(f"{k};dur={v}" for k, v in steps.items())


async def apply(body: ApplicationIn, request: Request, key: IdempotencyKey) -> Response:
    """Decide a credit application: approve / decline / refer with limit, APR, daily rate,
    expiry and plain-language reasons. `Server-Timing` gives the per-step milliseconds."""
    applied = await _decisions(request).apply_async(body, key)
    # The decision is already a validated model: serialise it once, skip FastAPI's second pass.
    response = Response(applied.decision.model_dump_json(), status_code=200 if applied.decision.replayed else 201,
                        media_type="application/json")
    _server_timing(response, applied.steps_ms)
    return response


router.add_api_route("/applications", apply, methods=["POST"], status_code=201, response_model=DecisionOut,
                     route_class_override=_ApplyRoute,
                     responses={200: {"description": "a replay of the decision stored under this Idempotency-Key"},
                                409: {"description": "the Idempotency-Key was used for a different application"},
                                422: {"description": "the application breaks a rule: field, value and rule named"}})


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
