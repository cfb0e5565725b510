"""The bank's HTTP API through FastAPI's TestClient, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from fieldbank.api.app import create_app
from fieldbank.config import load_settings

ON = "2026-01-01"


@pytest.fixture
def client(engine, tmp_path):  # noqa: ANN001, ANN201
    app = create_app(load_settings(data_dir=tmp_path), engine=engine)
    yield TestClient(app)
    app.state.decisions.close()  # its threads and its own database connections


def _open(client: TestClient, key: str = "open-1", **overrides) -> dict:  # noqa: ANN003
    body = {"offer_id": f"offer-{key}", "party_id": "party-1", "product_code": "line-revolving",
            "amount_minor": 100_000, "on": ON, **overrides}
    response = client.post("/bank/lines", json=body, headers={"Idempotency-Key": key})
    assert response.status_code == 201, response.text
    return response.json()


def _journal_count(engine) -> int:  # noqa: ANN001
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM journal_lines")).scalar_one()


def test_open_draw_repay_statement_trial_balance(client: TestClient) -> None:
    loan_id = _open(client)["loan_id"]
    draw = client.post(f"/bank/loans/{loan_id}/draws", json={"amount_minor": 60_000, "on": ON},
                       headers={"Idempotency-Key": "d1"})
    assert draw.status_code == 200 and draw.json()["status"] == "settled"
    repay = client.post(f"/bank/loans/{loan_id}/repayments", json={"amount_minor": 10_000, "on": ON},
                        headers={"Idempotency-Key": "r1"})
    assert repay.json()["paid"] == {"fees": 0, "interest": 0, "principal": 10_000}
    statement = client.get(f"/bank/loans/{loan_id}/statement").json()
    assert statement["loan"]["principal_minor"] == 50_000
    assert [ln["account_code"] for ln in statement["lines"]] == ["LOANS_PRINCIPAL", "BORROWER_PAYMENT", "LOANS_PRINCIPAL"]
    tb = client.get("/bank/trial-balance").json()
    assert tb["total_minor"] == 0
    assert client.get("/bank/portfolio").json()["outstanding_minor"] == 50_000


def test_installment_schedule_route(client: TestClient) -> None:
    loan_id = _open(client, key="inst", product_code="equal-principal-6m", amount_minor=600_000)["loan_id"]
    schedule = client.get(f"/bank/loans/{loan_id}/schedule").json()
    assert [(r["principal_due_minor"], r["interest_due_minor"]) for r in schedule][:2] == [(100_000, 6_000), (100_000, 5_000)]


def test_idempotency_replay_and_conflict(client: TestClient, engine) -> None:  # noqa: ANN001
    loan_id = _open(client)["loan_id"]
    first = client.post(f"/bank/loans/{loan_id}/draws", json={"amount_minor": 5_000, "on": ON},
                        headers={"Idempotency-Key": "same"})
    count = _journal_count(engine)
    second = client.post(f"/bank/loans/{loan_id}/draws", json={"amount_minor": 5_000, "on": ON},
                         headers={"Idempotency-Key": "same"})
    assert second.status_code == 200 and second.json()["replayed"] is True
    assert second.json()["disbursement_id"] == first.json()["disbursement_id"]
    assert _journal_count(engine) == count
    conflict = client.post(f"/bank/loans/{loan_id}/draws", json={"amount_minor": 6_000, "on": ON},
                           headers={"Idempotency-Key": "same"})
    assert conflict.status_code == 409
    assert conflict.json()["errors"][0]["field"] == "Idempotency-Key"
    assert _journal_count(engine) == count


@pytest.mark.parametrize("body,field,value,rule", [
    ({"amount_minor": -5}, "amount_minor", -5, "greater than or equal to 1"),
    ({"amount_minor": 1.5}, "amount_minor", 1.5, "valid integer"),
    ({"amount_minor": 200_000}, "amount_minor", 200_000, "available limit"),
    ({"amount_minor": 10, "colour": "red"}, "colour", "red", "Extra inputs"),
])
def test_422_names_field_value_rule_and_changes_nothing(client: TestClient, engine, body: dict, field: str,  # noqa: ANN001
                                                         value: object, rule: str) -> None:
    loan_id = _open(client)["loan_id"]
    before = _journal_count(engine)
    response = client.post(f"/bank/loans/{loan_id}/draws", json={**body, "on": ON}, headers={"Idempotency-Key": "bad"})
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert (error["field"], error["value"]) == (field, value) and rule in error["rule"]
    assert _journal_count(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = 'bad'")).scalar_one() == 0


def test_missing_idempotency_key_is_422(client: TestClient) -> None:
    response = client.post("/bank/lines", json={"offer_id": "o", "party_id": "p", "product_code": "line-revolving",
                                                "amount_minor": 5})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


def test_unknown_loan_is_404(client: TestClient) -> None:
    assert client.get("/bank/loans/999/statement").status_code == 404
