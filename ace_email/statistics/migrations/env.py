"""Alembic's entry point: migrates the connection the caller hands over, online only."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ace_email.statistics.schema import Base

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
