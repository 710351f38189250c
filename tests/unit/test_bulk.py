"""`models.bulk`: the bulk insert."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import JSON, Boolean, Column, DateTime, Integer, MetaData, String, Table, select
from sqlalchemy.exc import IntegrityError

from models.bulk import BulkInsert
from models.store import _engine_for


def _table() -> Table:
    return Table(
        "t", MetaData(),
        Column("seq", Integer, primary_key=True),
        Column("key", String(20), unique=True, nullable=False),
        Column("data", JSON, nullable=False),
        Column("at", DateTime, nullable=True),
        Column("flag", Boolean, nullable=False),
    )


def test_bulk_insert_binds_like_sqlalchemy_and_reports_a_clash(tmp_path: Path) -> None:
    table = _table()
    engine = _engine_for(f"sqlite:///{tmp_path / 'b.db'}")
    table.metadata.create_all(engine)
    from datetime import datetime

    rows = [
        {"key": "a", "data": {"词": [1, 2.5]}, "at": datetime(2026, 1, 2, 3, 4, 5), "flag": True},
        {"key": "b", "data": [], "at": None, "flag": False},
    ]
    insert = BulkInsert(table)
    with engine.begin() as conn:
        insert(conn, rows)
        conn.execute(table.insert(), [{**rows[0], "key": "c"}])  # SQLAlchemy's own path
    with engine.connect() as conn:
        got = [tuple(r) for r in conn.execute(select(table).order_by(table.c.seq))]
    assert got == [
        (1, "a", {"词": [1, 2.5]}, datetime(2026, 1, 2, 3, 4, 5), True),
        (2, "b", [], None, False),
        (3, "c", {"词": [1, 2.5]}, datetime(2026, 1, 2, 3, 4, 5), True),
    ]
    with engine.connect() as conn:  # the stored text is what SQLAlchemy's path stores
        raw = conn.exec_driver_sql("SELECT data, at, flag FROM t WHERE key IN ('a', 'c')").all()
    assert raw[0] == raw[1]
    with engine.begin() as conn, pytest.raises(IntegrityError):
        insert(conn, [{**rows[1], "key": "a"}])
    engine.dispose()
