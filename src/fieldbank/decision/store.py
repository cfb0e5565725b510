"""Migrations of the decision log (its own Alembic chain; see models.py for why)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("fieldbank.decision") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def migrate_decisions(engine: Engine, revision: str = "head") -> None:
    """Bring the decision log to `revision` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)
