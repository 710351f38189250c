"""Alembic migrations on a real PostgreSQL: the head matches `models.tables` (no
`compare_metadata` diffs), a second run changes nothing, and downgrade/upgrade round-trips.
Each test works in its own schema, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine

from models.migrate import alembic_config, current_revision, head_revision, migrate, schema_diffs
from models.store import Store
from ops.pg_schema import scratch_schema

pytestmark = pytest.mark.integration


@pytest.fixture
def schema_url(pg_url: str) -> Iterator[str]:
    with scratch_schema(pg_url, "test_migrate") as url:
        yield url


@pytest.fixture
def engine(schema_url: str) -> Iterator[Engine]:
    eng = create_engine(schema_url)
    yield eng
    eng.dispose()


def test_head_matches_the_sqlmodel_metadata_on_postgres(engine: Engine) -> None:
    assert migrate(engine) == "upgraded"
    with engine.connect() as conn:
        assert schema_diffs(conn) == []
        assert current_revision(conn) == head_revision()
    assert migrate(engine) == "current"


def test_downgrade_and_upgrade_on_postgres(engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert migrate(engine) == "upgraded"


def test_store_from_url_migrates_postgres(schema_url: str) -> None:
    store = Store.from_url(schema_url)
    try:
        with store.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
            assert schema_diffs(conn) == []
    finally:
        store.close()
