"""Alembic environment of the decision log's own chain (version table decision_alembic_version);
the engine comes from fieldbank.decision.store.migrate_decisions (config attributes)."""

from __future__ import annotations

from alembic import context

from fieldbank.decision.models import DecisionBase

VERSION_TABLE = "decision_alembic_version"
target_metadata = DecisionBase.metadata


def _engine():  # noqa: ANN202
    engine = context.config.attributes.get("engine")
    if engine is not None:
        return engine
    from fieldbank.bank.db import make_engine
    from fieldbank.config import load_settings

    return make_engine(context.config.get_main_option("sqlalchemy.url") or load_settings().database_url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported: run against a database")
run_migrations_online()
