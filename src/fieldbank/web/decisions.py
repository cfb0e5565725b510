"""The decision service as the web pages see it: aggregates for the dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fieldbank.monitor.decisions import decision_summary


def summary(app: FastAPI) -> dict[str, Any] | None:
    """Decisions, approval rate and per-grade approval and bad rates; None without the service."""
    with app.state.bank.engine.connect() as conn:
        return decision_summary(conn)
