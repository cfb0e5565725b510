"""Alembic environment of the decision log's own chain (version table decision_alembic_version);
the engine comes from fieldbank.decision.store.migrate_decisions (config attributes)."""

from fieldbank.bank.db import run_migrations_env
from fieldbank.decision.models import DecisionBase

run_migrations_env(DecisionBase.metadata, version_table="decision_alembic_version")
