"""Alembic environment: store's metadata, URL from the caller (or DATABASE_URL)."""
from __future__ import annotations

from alembic import context
from sqlalchemy import text

from config.settings import get_settings
from store.db import get_engine, without_timeouts
from store.models import Base

config = context.config
url = config.attributes.get("database_url") or get_settings().resolved_database_url
_LOCK_ID = 7_312_025  # serializes concurrent upgrades on PostgreSQL


def run_migrations_online() -> None:
    engine = get_engine(url)
    with engine.connect() as connection:
        without_timeouts(connection)  # an index build on a large table may take longer than a request may
        is_pg = connection.dialect.name == "postgresql"
        is_sqlite = connection.dialect.name == "sqlite"
        if is_sqlite:  # batch mode rebuilds tables: other tables' foreign keys must not fire meanwhile
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
        if is_pg:
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_ID})
            connection.commit()
        try:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=connection.dialect.name == "sqlite",
            )
            with context.begin_transaction():
                context.run_migrations()
        finally:
            if is_pg:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_ID})
                connection.commit()
            if is_sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


if context.is_offline_mode():
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
