"""The FastAPI app factory. Routers: bank (this stage); the decision stage adds its own."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import Engine

from fieldbank.api.bank_routes import router as bank_router
from fieldbank.api.errors import install_error_handlers
from fieldbank.bank.db import make_engine, migrate
from fieldbank.bank.rails import PaymentRail
from fieldbank.bank.service import BankService
from fieldbank.config import Settings, load_settings


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               rail: PaymentRail | None = None) -> FastAPI:
    """Build the app on `settings.database_url` (migrated to head, default products present)."""
    settings = settings or load_settings()
    if engine is None:
        if settings.database_url.startswith("sqlite:///"):
            from pathlib import Path

            Path(settings.database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.database_url)
    migrate(engine)
    bank = BankService(engine, rail=rail)
    bank.ensure_products()
    app = FastAPI(title="fieldbank", version="0.1.0",
                  description="Lend on data instead of collateral: the bank core's HTTP API.")
    app.state.settings = settings
    app.state.bank = bank
    install_error_handlers(app)
    app.include_router(bank_router)
    from fieldbank.web import install_web  # the borrower pages and the ops dashboard

    install_web(app, settings)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
