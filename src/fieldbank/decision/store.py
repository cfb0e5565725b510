"""Migrations of the decision log (its own Alembic chain; see models.py for why)."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine

from fieldbank.bank.db import alembic_config


def migrate_decisions(engine: Engine, revision: str = "head") -> None:
    """Bring the decision log to `revision` (idempotent)."""
    command.upgrade(alembic_config(engine, "fieldbank.decision"), revision)
