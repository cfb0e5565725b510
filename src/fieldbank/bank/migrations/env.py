"""Alembic environment: the engine comes from fieldbank.bank.db.migrate (config attributes),
or from FIELDBANK_DATABASE_URL / settings when run through the alembic CLI."""

from __future__ import annotations

from alembic import context

from fieldbank.bank.models import Base

target_metadata = Base.metadata


def _engine():  # noqa: ANN202
    engine = context.config.attributes.get("engine")
    if engine is not None:
        return engine
    from fieldbank.bank.db import make_engine
    from fieldbank.config import load_settings

    url = context.config.get_main_option("sqlalchemy.url") or load_settings().database_url
    return make_engine(url)


def run_migrations_online() -> None:
    engine = _engine()
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported: run against a database")
run_migrations_online()
