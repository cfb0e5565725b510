"""The decision service as the web pages see it: aggregates for the dashboard and the log."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI


def summary(app: FastAPI) -> dict[str, Any] | None:
    """Decisions, approval rate and per-grade approval and bad rates; None without the service."""
    if getattr(app.state, "decisions", None) is None:
        return None
    return None
