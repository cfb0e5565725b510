"""Engines and migrations for the bank database (SQLite file by default, PostgreSQL in production).

SQLite: foreign keys on (the deferred journal FK is part of the balance guarantee), WAL, a
busy timeout, and every transaction opened with BEGIN IMMEDIATE so writers serialise up
front instead of failing on lock upgrade. PostgreSQL: READ COMMITTED plus explicit row locks
(SELECT ... FOR UPDATE) in the service layer.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text

SQLITE_BUSY_TIMEOUT_MS = 60_000


def make_engine(database_url: str, *, schema: str | None = None, pool_size: int = 20) -> Engine:
    """An engine with the bank's connection settings. `schema` sets the PostgreSQL search_path
    (tests give every worker its own schema)."""
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_connection, _record):  # noqa: ANN001
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if ":memory:" not in database_url:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection):  # noqa: ANN001
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    url = make_url(database_url)
    if schema:  # in the URL, not connect_args, so engines derived from engine.url keep it
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True)


def scratch_schema_engine(database_url: str, prefix: str, *, pool_size: int = 20) -> tuple[Engine, Callable[[], None]]:
    """A PostgreSQL engine on a new, empty schema named `<prefix>_<worker>_<random>`, and the
    function that drops it: tests and benchmarks get a database of their own on a shared server."""
    assert database_url.startswith("postgresql"), database_url
    schema = f"{prefix}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(database_url, pool_size=1)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(database_url, schema=schema, pool_size=pool_size)

    def drop() -> None:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()

    return engine, drop


def alembic_config(engine: Engine, package: str = "fieldbank.bank") -> Config:
    """An Alembic config for the migration chain in `<package>/migrations`, working from an
    installed package (no alembic.ini needed). The decision log has its own chain."""
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files(package) / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent)."""
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def run_migrations_env(target_metadata, version_table: str = "alembic_version") -> None:  # noqa: ANN001
    """The body of each migration chain's env.py (the bank's and the decision log's): run online
    against the engine `migrate` passed in the config attributes, or, from the alembic CLI,
    against `sqlalchemy.url` / FIELDBANK_DATABASE_URL / settings."""
    from alembic import context

    if context.is_offline_mode():
        raise SystemExit("offline SQL generation is not supported: run against a database")
    engine = context.config.attributes.get("engine")
    if engine is None:
        from fieldbank.config import load_settings

        engine = make_engine(context.config.get_main_option("sqlalchemy.url") or load_settings().database_url)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          version_table=version_table)
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
