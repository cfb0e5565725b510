"""`fieldbank serve` over real HTTP: a separate process, a real socket, the bank routes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fieldbank.api.process import serving

pytestmark = pytest.mark.slow
STARTUP_LIMIT_S = 60


def test_serve_answers_over_http(tmp_path: Path) -> None:
    with serving(tmp_path, startup_limit_s=STARTUP_LIMIT_S) as served:
        base = served.base_url
        body = {"offer_id": "o-1", "party_id": "P1", "product_code": "annuity-12m", "amount_minor": 120_000}
        first = httpx.post(f"{base}/bank/lines", json=body, headers={"Idempotency-Key": "k-1"})
        again = httpx.post(f"{base}/bank/lines", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 201, first.text
        assert again.json()["loan_id"] == first.json()["loan_id"]
        bad = httpx.post(f"{base}/bank/lines", json={**body, "amount_minor": -5}, headers={"Idempotency-Key": "k-2"})
        assert bad.status_code == 422 and "amount_minor" in bad.text
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "fieldbank"
        assert httpx.get(f"{base}/bank/trial-balance").status_code == 200
