"""Schema migrations (数据库迁移) with Alembic: `migrate(url)` brings a database to the head.

- an empty database: every migration is applied (``upgrade head``);
- a database Alembic already manages: the pending migrations are applied;
- a database made before migrations existed (by ``create_all``): it is compared with the
  SQLModel metadata and, when it matches, stamped at the head; otherwise `SchemaMismatch`.

The migration scripts live in ``models/migrations`` (config ``models/alembic.ini``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

import models.tables  # noqa: F401  (registers the tables on SQLModel.metadata)

MODELS_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = MODELS_DIR / "alembic.ini"
VERSION_TABLE = "alembic_version"
_LOCK_KEY = 12345_2025  # pg advisory lock id for migrations


class SchemaMismatch(RuntimeError):
    """An unversioned database whose tables differ from the code's."""

    def __init__(self, diffs: list[Any]) -> None:
        lines = "；".join(str(d) for d in diffs[:5])
        super().__init__(
            f"数据库中已有未纳入迁移管理的表，且与当前表结构不一致（{len(diffs)} 处差异：{lines}）；"
            "请备份后重建数据库，或手工迁移后执行 alembic stamp head"
        )
        self.diffs = diffs


def alembic_config(connection: Connection | None = None) -> Config:
    """The Alembic config for the project's migrations, bound to ``connection`` if given."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(MODELS_DIR / "migrations"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("models/migrations/versions 中没有迁移脚本")
    return head


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None when Alembic does not manage it)."""
    return MigrationContext.configure(connection).get_current_revision()


def schema_diffs(connection: Connection) -> list[Any]:
    """Differences between the database and `SQLModel.metadata` (empty when they match)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, SQLModel.metadata))


def migrate(target: str | Engine) -> str:
    """Bring the database at ``target`` (URL or engine) to the head revision.

    Returns what was done: ``"upgraded"``, ``"stamped"`` (pre-migration database adopted) or
    ``"current"`` (already at the head).
    """
    engine = create_engine(target) if isinstance(target, str) else target
    try:
        with engine.begin() as conn:
            return _migrate(conn)
    finally:
        if isinstance(target, str):
            engine.dispose()


def _migrate(conn: Connection) -> str:
    if conn.dialect.name == "postgresql":  # one migrator at a time (several workers may start)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    tables = set(inspect(conn).get_table_names())
    config = alembic_config(conn)
    if VERSION_TABLE not in tables and tables & set(SQLModel.metadata.tables):
        diffs = schema_diffs(conn)
        if diffs:
            raise SchemaMismatch(diffs)
        command.stamp(config, "head")
        return "stamped"
    if current_revision(conn) == head_revision():
        return "current"
    command.upgrade(config, "head")
    return "upgraded"
