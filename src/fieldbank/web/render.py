"""Jinja2 templates with the money filters and the signed-in user in every page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from fieldbank.web import auth
from fieldbank.web.money import fmt_bps, fmt_minor

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["money"] = fmt_minor
TEMPLATES.env.filters["bps"] = fmt_bps
TEMPLATES.env.filters["pct"] = lambda x, digits=1: "–" if x is None else f"{100 * x:.{digits}f}%"


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return TEMPLATES.TemplateResponse(request, template, {
        "user": auth.current_user(request), "csrf": auth.csrf_token(request), **context}, status_code=status_code)
