"""Alembic migrations on SQLite: the head matches `models.tables` exactly, and `migrate`
adopts, upgrades and refuses the right databases. The same checks run on PostgreSQL in
tests/integration/test_migrations_pg.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from hotline.cli import main
from models.migrate import (
    SchemaMismatch,
    alembic_config,
    current_revision,
    head_revision,
    migrate,
    schema_diffs,
)
from models.store import Store


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    return create_engine(f"sqlite:///{tmp_path / 'hotline.db'}")


def test_head_matches_the_sqlmodel_metadata(engine: Engine) -> None:
    assert migrate(engine) == "upgraded"
    with engine.connect() as conn:
        assert schema_diffs(conn) == []
        assert current_revision(conn) == head_revision()
    assert set(SQLModel.metadata.tables) <= set(inspect(engine).get_table_names())


def test_second_run_changes_nothing(engine: Engine) -> None:
    migrate(engine)
    assert migrate(engine) == "current"


def test_downgrade_to_base_then_up_again(engine: Engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert migrate(engine) == "upgraded"


def test_a_create_all_database_is_adopted_at_head(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    assert migrate(engine) == "stamped"
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()


def test_an_unversioned_database_that_differs_is_refused(engine: Engine) -> None:
    legacy = MetaData()
    Table("work_order", legacy, Column("id", Integer, primary_key=True))
    legacy.create_all(engine)
    with pytest.raises(SchemaMismatch, match="不一致"):
        migrate(engine)


def test_store_from_url_runs_the_migrations(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.from_url(url)
    try:
        with store.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
    finally:
        store.close()


def test_hotline_db_upgrade_uses_the_configured_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "cli.db"
    monkeypatch.setenv("HOTLINE_DATABASE_URL", f"sqlite:///{db}")
    assert main(["db", "upgrade"]) == 0
    assert "已升级到最新版本" in capsys.readouterr().out
    assert main(["db", "current"]) == 0
    assert head_revision() in capsys.readouterr().out
