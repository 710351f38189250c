"""`models.bulk` on a real PostgreSQL (rows by ``COPY``): it stores what SQLAlchemy's own
INSERT stores, refuses what the INSERT refuses, and reports errors as SQLAlchemy's (a lost
server as a disconnect).

Runs when HOTLINE_TEST_DATABASE_URL is set (the `pg_url` fixture in conftest.py); skipped outside
CI when it is unset, FAILED under CI.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import (
    JSON, Boolean, Column, DateTime, Engine, Float, Integer, MetaData, String, Table, func, select,
)
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlmodel import AutoString

from models.bulk import BulkInsert
from models.store import _engine_for
from ops.pg_schema import scratch_schema
from tests.integration.test_store_pg import terminate_backend

pytestmark = pytest.mark.integration

AWKWARD = 'tab\there\nnew line \\ backslash \\N "quoted" \'single\' 诉求 😀 {a,b} %s %%'


def _tables() -> tuple[Table, Table]:
    meta = MetaData()
    main = Table(
        "bulk_main", meta,
        Column("seq", Integer, primary_key=True),
        Column("key", String(40), unique=True, nullable=False),
        Column("data", JSON, nullable=True),
        Column("at", DateTime, nullable=True),
        Column("flag", Boolean, nullable=False),
        Column("score", Float, nullable=True),
        Column("note", String, nullable=True),
    )
    side = Table(
        "bulk_side", meta,
        Column("id", Integer, primary_key=True),
        Column("key", AutoString(5), unique=True, nullable=False),  # as the product's tables
    )
    return main, side


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    with scratch_schema(pg_url, "test_bulk") as url:
        eng = _engine_for(url)
        main, _ = _tables()
        main.metadata.create_all(eng)
        yield eng
        eng.dispose()


def _row(key: str, **over: object) -> dict[str, object]:
    return {"key": key, "data": {"词": [1, 2.5, None], "text": AWKWARD},
            "at": datetime(2026, 1, 2, 3, 4, 5, 678901), "flag": True, "score": 0.1 + 0.2,
            "note": AWKWARD, **over}


def test_stores_what_sqlalchemys_insert_stores(engine: Engine) -> None:
    main, _ = _tables()
    ours = [_row("a"), _row("b", data=None, at=None, flag=False, score=None, note=None),
            _row("c", data=[], score=-1e-300), _row("d", data="only a string", score=1e300)]
    with engine.begin() as conn:
        BulkInsert(main)(conn, ours)
        conn.execute(main.insert(), [{**r, "key": f"sa-{r['key']}"} for r in ours])
    with engine.connect() as conn:
        got = conn.execute(select(main).order_by(main.c.seq)).all()
        # the stored text, not only what it reads back as
        raw = conn.exec_driver_sql(
            "SELECT key, data::text, at::text, flag::text, score::text, note FROM bulk_main "
            "ORDER BY seq").all()
    assert [r.key for r in got] == ["a", "b", "c", "d", "sa-a", "sa-b", "sa-c", "sa-d"]
    assert [tuple(r)[2:] for r in got[:4]] == [tuple(r)[2:] for r in got[4:]]
    assert got[0].data == {"词": [1, 2.5, None], "text": AWKWARD}
    assert got[0].note == AWKWARD and got[0].score == 0.1 + 0.2
    assert got[1].data is None and got[1].at is None and got[1].note is None
    assert [r[1:] for r in raw[:4]] == [r[1:] for r in raw[4:]]


def test_many_rows_keep_their_order_and_odd_floats_survive(engine: Engine) -> None:
    main, _ = _tables()
    rows = [_row(f"k{i:04d}", score=float(i)) for i in range(500)]
    rows[7]["score"] = math.inf
    rows[8]["score"] = -math.inf
    rows[9]["score"] = math.nan
    with engine.begin() as conn:
        BulkInsert(main)(conn, rows)
    with engine.connect() as conn:
        got = conn.execute(select(main.c.key, main.c.score).order_by(main.c.seq)).all()
    assert [k for k, _ in got] == [r["key"] for r in rows]
    assert got[7].score == math.inf and got[8].score == -math.inf and math.isnan(got[9].score)
    assert got[499].score == 499.0


def test_a_lost_server_is_a_disconnect_and_the_connection_is_replaced(
    engine: Engine, pg_url: str
) -> None:
    """The server process of the connection dies before the rows go in: SQLAlchemy's
    `OperationalError`, marked as a lost connection (a worker retries it as transient instead
    of dead-lettering the orders), and the pool's next connection works."""
    from streams.faults import is_transient

    main, _ = _tables()
    with engine.connect() as conn:
        assert terminate_backend(pg_url, conn.execute(select(func.pg_backend_pid())).scalar_one())
        with pytest.raises(OperationalError) as lost:
            BulkInsert(main)(conn, [_row("a")])
    assert lost.value.connection_invalidated and is_transient(lost.value)
    with engine.begin() as conn:
        BulkInsert(main)(conn, [_row("a")])
    with engine.connect() as conn:
        assert conn.execute(select(main.c.key)).scalars().all() == ["a"]


def test_refuses_what_the_insert_refuses(engine: Engine) -> None:
    main, side = _tables()
    with engine.begin() as conn, pytest.raises(DataError):
        BulkInsert(side)(conn, [{"key": "longer than five"}])  # not cut to five
    with engine.begin() as conn, pytest.raises(DataError):
        BulkInsert(main)(conn, [_row("k" * 41)])
    with engine.begin() as conn, pytest.raises(IntegrityError):
        BulkInsert(main)(conn, [_row("same"), _row("same")])
    with engine.connect() as conn:
        assert conn.execute(select(side.c.key)).scalars().all() == []
        assert conn.execute(select(main.c.key)).scalars().all() == []
