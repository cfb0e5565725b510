"""The /v1 routes over ASGI: status codes, X-API-Key, Server-Timing, OpenAPI, and a
schemathesis fuzz of the whole app's schema (decision and bank routes): no 5xx."""

from __future__ import annotations

from pathlib import Path

import pytest
import schemathesis
from decision_data import portrait_parties
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from fieldbank.api.app import create_app
from fieldbank.config import load_settings
from fieldbank.decision.writer import WRITE_TIMEOUT_S

pytestmark = pytest.mark.slow
KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def app(economy: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    db = tmp_path_factory.mktemp("api") / "bank.db"
    app = create_app(load_settings(data_dir=economy, database_url=f"sqlite:///{db}", api_keys=[KEY]))
    yield app
    app.state.decisions.close()


@pytest.fixture(scope="module")
def client(app):  # noqa: ANN001, ANN201
    with TestClient(app, headers={"X-API-Key": KEY}) as c:
        yield c


def body(party: str, **over) -> dict:
    return {"party_id": party, "consent": True, "requested_amount_minor": 400_000, "term_days": 120,
            "purpose": "inventory", **over}


def test_apply_replay_conflict_and_why(client, economy: Path) -> None:
    party = portrait_parties(economy)[3]
    first = client.post("/v1/applications", json=body(party), headers={"Idempotency-Key": "api-1"})
    assert first.status_code == 201, first.text
    assert {s.split(";")[0] for s in first.headers["Server-Timing"].split(", ")} == \
        {"lookup", "validation", "fraud", "portrait", "scoring", "rules", "write"}
    again = client.post("/v1/applications", json=body(party), headers={"Idempotency-Key": "api-1"})
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert again.json()["decision_id"] == first.json()["decision_id"]
    conflict = client.post("/v1/applications", json=body(party, term_days=60), headers={"Idempotency-Key": "api-1"})
    assert conflict.status_code == 409 and conflict.json()["errors"][0]["field"] == "Idempotency-Key"
    why = client.get(f"/v1/decisions/{first.json()['decision_id']}")
    assert why.status_code == 200 and why.json()["rule_outcomes"]
    assert client.get("/v1/decisions/D" + "0" * 20).status_code == 404


def test_422_names_field_value_and_rule(client, economy: Path) -> None:
    party = portrait_parties(economy)[3]
    r = client.post("/v1/applications", json=body(party, requested_amount_minor=-1), headers={"Idempotency-Key": "b-1"})
    assert r.status_code == 422
    err = r.json()["errors"][0]
    assert err["field"] == "requested_amount_minor" and err["value"] == -1 and err["rule"]
    r = client.post("/v1/applications", json=body(party, national_id="110105198001010017"),
                    headers={"Idempotency-Key": "b-2"})
    assert r.status_code == 422 and r.json()["errors"][0]["rule"].startswith("check digit")
    r = client.post("/v1/applications", json=body(party))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "Idempotency-Key"


def test_a_stalled_decision_log_is_a_503_and_the_retry_replays(app, client, economy: Path) -> None:
    """The log cannot commit in time (its write lock is held): 503 with Retry-After, and once it
    can, the queued row lands and the same key replays that decision instead of making a second."""
    svc = app.state.decisions
    party = portrait_parties(economy)[5]
    svc.writer.timeout_s = 0.2
    try:
        with svc._write_lock:  # noqa: SLF001 - what a long commit by another writer looks like
            busy = client.post("/v1/applications", json=body(party), headers={"Idempotency-Key": "stall-1"})
    finally:
        svc.writer.timeout_s = WRITE_TIMEOUT_S
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert "same Idempotency-Key" in busy.json()["errors"][0]["rule"]
    retry = client.post("/v1/applications", json=body(party), headers={"Idempotency-Key": "stall-1"})
    assert retry.status_code in (200, 201), retry.text
    again = client.post("/v1/applications", json=body(party), headers={"Idempotency-Key": "stall-1"})
    assert again.status_code == 200 and again.json()["decision_id"] == retry.json()["decision_id"]


def test_api_key_is_required(app, economy: Path) -> None:
    with TestClient(app) as anonymous:
        r = anonymous.post("/v1/applications", json=body(portrait_parties(economy)[3]),
                           headers={"Idempotency-Key": "c-1"})
        assert r.status_code == 401 and r.json()["errors"][0]["field"] == "X-API-Key"
        assert anonymous.get("/v1/status", headers={"X-API-Key": "wrong"}).status_code == 401
        assert anonymous.get("/health").status_code == 200  # health and the bank routes stay open


def test_openapi_lists_the_decision_routes(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/applications", "/v1/decisions/{decision_id}", "/v1/offers/{decision_id}/accept", "/v1/status"} <= set(paths)
    assert client.get("/v1/status").json()["ready"] is True


def test_fuzz_no_server_errors(app) -> None:
    """Every operation of the app's OpenAPI schema (decision and bank routes), fuzzed from the
    schema with schemathesis' generators: no generated request may get a 5xx."""
    from hypothesis import given
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(data=st.data())
        def fuzz(data) -> None:  # noqa: ANN001
            case = data.draw(operation.as_strategy())
            case.call_and_validate(headers={"X-API-Key": KEY}, checks=[not_a_server_error])

        fuzz()


def test_apply_checks_headers_and_body_like_its_schema(app, client, economy: Path) -> None:
    """POST /v1/applications skips FastAPI's generic request handling (decision_routes
    `_apply_direct`): it must still check what its OpenAPI operation declares, name the field,
    and change nothing when it rejects."""
    from sqlalchemy import text

    def stored() -> int:
        with app.state.decisions.engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM decisions")).scalar_one()

    party = portrait_parties(economy)[4]
    before = stored()
    cases = [  # (request kwargs, field named, value named)
        ({"json": body(party, applicant={"kind": "household", "national_id": ""}), "key": "d-1"},
         "applicant.national_id", ""),
        ({"json": body(party, surprise=1), "key": "d-2"}, "surprise", 1),
        ({"content": b"{not json", "key": "d-3", "type": "application/json"}, "body", "{not json"),
        ({"content": b"", "key": "d-4", "type": "application/json"}, "body", ""),
        ({"content": b'{"party_id": "x"}', "key": "d-5", "type": "text/plain"}, "body", None),
        ({"json": body(party), "key": "k" * 201}, "Idempotency-Key", "k" * 201),
        ({"json": body(party), "key": ""}, "Idempotency-Key", ""),
    ]
    for kw, field, value in cases:
        headers = {"Idempotency-Key": kw["key"]}
        if "type" in kw:
            headers["Content-Type"] = kw["type"]
        r = client.post("/v1/applications", json=kw.get("json"), content=kw.get("content"), headers=headers)
        assert r.status_code == 422, (kw, r.text)
        errors = r.json()["errors"]
        assert any(e["field"] == field and e["value"] == value and e["rule"] for e in errors), (kw, errors)
    assert stored() == before
    with TestClient(app) as anonymous:  # the API key is checked before anything else
        r = anonymous.post("/v1/applications", json=body(party), headers={"Idempotency-Key": "d-6"})
        assert r.status_code == 401 and r.json()["errors"][0]["field"] == "X-API-Key"
    ok = client.post("/v1/applications", json=body(party), headers={"Idempotency-Key": "d-7",
                                                                    "Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 201, ok.text
    assert stored() == before + 1
