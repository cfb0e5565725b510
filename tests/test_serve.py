"""`fieldbank serve` over real HTTP: a separate process, a real socket, the bank routes."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow
STARTUP_LIMIT_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_answers_over_http(tmp_path: Path) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fieldbank.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_LIMIT_S
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        body = {"offer_id": "o-1", "party_id": "P1", "product_code": "annuity-12m", "amount_minor": 120_000}
        first = httpx.post(f"{base}/bank/lines", json=body, headers={"Idempotency-Key": "k-1"})
        again = httpx.post(f"{base}/bank/lines", json=body, headers={"Idempotency-Key": "k-1"})
        assert first.status_code == 201, first.text
        assert again.json()["loan_id"] == first.json()["loan_id"]
        bad = httpx.post(f"{base}/bank/lines", json={**body, "amount_minor": -5}, headers={"Idempotency-Key": "k-2"})
        assert bad.status_code == 422 and "amount_minor" in bad.text
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "fieldbank"
        assert httpx.get(f"{base}/bank/trial-balance").status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
