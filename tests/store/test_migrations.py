"""The Alembic migration creates store's tables and round-trips down and up."""
from __future__ import annotations

from alembic import command
from sqlalchemy import inspect

from migrations import alembic_config, upgrade
from store.db import get_engine
from store.models import Base


def test_migration_matches_models_and_round_trips(database_url):
    engine = get_engine(database_url)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    for table in Base.metadata.tables.values():
        cols = {c["name"] for c in inspect(engine).get_columns(table.name)}
        assert cols == {c.name for c in table.columns}, table.name
    command.downgrade(alembic_config(database_url), "base")
    assert not set(inspect(engine).get_table_names()) & set(Base.metadata.tables)
    upgrade(database_url)
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
