"""Server-rendered pages: the borrower's (sign in, apply, accept, draw, repay, statement) and
the bank's operations dashboard. Jinja2 templates, plain CSS, Plotly charts whose JavaScript is
served from the installed plotly package (no CDN: the machine may be offline)."""

from __future__ import annotations

from pathlib import Path

import importlib.util
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from fieldbank.config import Settings
from fieldbank.web import auth

STATIC_DIR = Path(__file__).parent / "static"
# Found without importing plotly (its Python side is not needed to serve its JavaScript).
PLOTLY_JS = Path(importlib.util.find_spec("plotly").origin).parent / "package_data" / "plotly.min.js"
PAGE_PREFIXES = ("/me", "/ops", "/login", "/logout")
SESSION_MAX_AGE_S = 8 * 3600  # a working day; then sign in again


def is_page(path: str) -> bool:
    return path == "/" or path.startswith(PAGE_PREFIXES)


def install_web(app: FastAPI, settings: Settings) -> None:
    """Add the pages, the static files and the session middleware to the API app."""
    from fieldbank.web.apply import router as apply_router
    from fieldbank.web.borrower import router as borrower_router
    from fieldbank.web.ops import router as ops_router
    from fieldbank.web.render import render

    assert PLOTLY_JS.exists(), f"plotly.js is missing from the installed plotly package: {PLOTLY_JS}"
    secret = auth.load_secret(settings.data_dir)
    app.state.web_secret = secret
    if not hasattr(app.state, "decisions"):
        app.state.decisions = None
    app.add_middleware(SessionMiddleware, secret_key=auth.session_key(secret), session_cookie="fieldbank_session",
                       max_age=SESSION_MAX_AGE_S, same_site="lax", https_only=False)

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return FileResponse(PLOTLY_JS, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(borrower_router)
    app.include_router(apply_router)
    app.include_router(ops_router)

    @app.exception_handler(auth.SignInRequired)
    async def _sign_in(_request: Request, exc: auth.SignInRequired) -> Response:
        return RedirectResponse(f"/login?next={exc.next_path}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if not is_page(request.url.path):
            return await http_exception_handler(request, exc)
        return render(request, "error.html", {"status_code": exc.status_code, "detail": exc.detail},
                      status_code=exc.status_code)
