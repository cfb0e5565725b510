"""The FastAPI app factory. Routers: bank (/bank) and decisions (/v1)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from sqlalchemy import Engine

from fieldbank.api.bank_routes import router as bank_router
from fieldbank.api.decision_routes import router as decision_router
from fieldbank.api.errors import install_error_handlers
from fieldbank.bank.db import make_engine, migrate
from fieldbank.bank.rails import PaymentRail
from fieldbank.bank.service import BankService
from fieldbank.config import Settings, load_settings
from fieldbank.decision.service import REQUEST_THREADS, DecisionService
from fieldbank.decision.store import migrate_decisions

log = logging.getLogger("fieldbank.api")


def prepare_database(settings: Settings, engine: Engine | None = None) -> Engine:
    """The database at head (the bank's and the decision log's migrations) with the default
    products. `fieldbank serve --workers N` runs this once before the workers start, so they
    never race each other's DDL; in each worker it is then a no-op."""
    if engine is None:
        if settings.database_url.startswith("sqlite:///"):
            Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
    migrate(engine)
    migrate_decisions(engine)
    BankService(engine).ensure_products()
    return engine


async def _limit_request_threads() -> None:
    """FastAPI runs each sync route on anyio's thread pool (40 threads by default): bound it to
    REQUEST_THREADS so concurrent requests never need more connections than the pool keeps."""
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               rail: PaymentRail | None = None) -> FastAPI:
    """Build the app on `settings.database_url` (migrated to head, default products present)."""
    settings = settings or load_settings()
    engine = prepare_database(settings, engine)
    bank = BankService(engine, rail=rail)
    decisions = DecisionService(engine, settings, bank)
    if not settings.api_keys:
        log.warning("no api_keys configured: the /v1 decision routes accept requests without X-API-Key")
    app = FastAPI(title="fieldbank", version="0.1.0",
                  description="Lend on data instead of collateral: credit decisions (/v1) and the bank core (/bank).")
    app.state.settings = settings
    app.state.bank = bank
    app.state.decisions = decisions
    app.router.add_event_handler("shutdown", decisions.aclose)
    app.router.add_event_handler("startup", _limit_request_threads)
    install_error_handlers(app)
    # The decision routes first: the router tries routes in order, and POST /v1/applications is the hot path.
    app.include_router(decision_router)
    app.include_router(bank_router)
    from fieldbank.web import install_web  # the borrower pages and the ops dashboard

    install_web(app, settings)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory for `fieldbank serve --workers N`: each worker process builds its app
    from the FIELDBANK_* environment that the serve command set."""
    return create_app(load_settings())
