"""Alembic environment of the bank's chain: the engine comes from fieldbank.bank.db.migrate
(config attributes), or from FIELDBANK_DATABASE_URL / settings when run through the alembic CLI."""

from fieldbank.bank.db import run_migrations_env
from fieldbank.bank.models import Base

run_migrations_env(Base.metadata)
