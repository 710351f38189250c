"""Bulk inserts (批量写入) for the write path of `Store.dispatch_batch`.

`Connection.execute(insert(table), rows)` spends most of its time per row in SQLAlchemy's
parameter bookkeeping (a dict of every bind per row, then a second pass for the type
processors), more than SQLite spends inserting the row. `BulkInsert` does the same insert with
each row's values put through the same dialect type processors (JSON, DateTime, Boolean) that
SQLAlchemy would apply, so what is stored is the same on SQLite and PostgreSQL:

- on SQLite, one ``executemany`` of the statement SQLAlchemy compiled, on the driver's cursor
  of the same connection and transaction;
- on PostgreSQL with psycopg, one statement per call of `insert_many`, however many tables and
  rows. Each table's rows go as one JSON text parameter, an array of rows, each row an array
  of its values as text (JSON columns: the value serialized by `json_dumps`, as SQLAlchemy
  would; times in ISO format), encoded in one call of the C JSON encoder; the server casts
  each value to its column's type: ``INSERT INTO t (…) SELECT CAST(u.value ->> 0 AS type), …
  FROM jsonb_array_elements(CAST(%(rows_0)s AS JSONB)) WITH ORDINALITY AS u(value, n) ORDER BY
  u.n``, the tables chained as data-modifying ``WITH`` parts. The statement is built with
  SQLAlchemy Core from the tables' metadata, once per set of tables.
  - One statement is one round trip to the server (``COPY`` took two per table, and its
    transaction two more), and it is atomic by itself, so a batch of new orders can be written
    on an autocommit connection without ``BEGIN`` and ``COMMIT``. Each round trip gives up the
    GIL and waits to take it back from a busy event loop: in a Kafka worker the round trips,
    not the server's work, were most of a small batch's write.
  - Not arrays (``unnest(%s::text[], …)``): psycopg dumps a list element by element in
    Python, which cost more than the round trips saved.
  - The text is the same for every call with the same tables, so psycopg prepares it on the
    server after a few uses.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii
from typing import Any

from sqlalchemy import JSON, DateTime, Float, String, Table, bindparam, cast, func, insert, select
from sqlalchemy import TypeDecorator
from sqlalchemy import column as sa_column
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.dml import Insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError

Processor = Callable[[Any], Any] | None


class _Prepared:
    """One table's insert compiled for one dialect: the SQL, and (column, processor) pairs in
    parameter order."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        keys = [c.key for c in table.columns if not _generated(c)]
        compiled = insert(table).compile(dialect=dialect, column_keys=keys)
        self.sql = compiled.string
        self.positional = bool(compiled.positional)
        names = list(compiled.positiontup or []) if self.positional else keys
        self.names = names
        unknown = set(names) - set(keys)
        if unknown:  # an escaped bind name: never the case for this project's columns
            raise ValueError(f"表 {table.name} 的参数名无法对应到列：{sorted(unknown)}")
        self.columns: list[tuple[str, Processor, bool]] = [
            (name, table.columns[name].type.dialect_impl(dialect).bind_processor(dialect),
             not isinstance(table.columns[name].type, JSON))
            for name in names
        ]
        self.table = table
        self.as_text = [(n, _TEXT_OF.get(_kind(table.columns[n].type))) for n in names]

    def _processors(self) -> list[tuple[str, Processor]]:
        # a batch's rows share few distinct values in the columns with a processor besides
        # JSON (times, which SQLite stores as text formatted in Python; booleans): process
        # each distinct value once
        return [(k, _memo(p) if p and plain else p) for k, p, plain in self.columns]

    def params(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        if self.positional:
            return self.tuples(rows)
        cols = self._processors()
        return [{k: p(r[k]) if p else r[k] for k, p in cols} for r in rows]

    def tuples(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """The rows' values in `names` order (positional parameters)."""
        cols = self._processors()
        return [tuple([p(r[k]) if p else r[k] for k, p in cols]) for r in rows]

    def json_rows(self, rows: Sequence[Mapping[str, Any]]) -> str:
        """The rows as one JSON array of arrays, values in `names` order (`json_insert`)."""
        as_text = self.as_text
        return _payload([[f(r[k]) if f else r[k] for k, f in as_text] for r in rows])

    def json_insert(self, param: str) -> Insert:
        """``INSERT`` of this table's rows from the JSON bound as ``param`` (`json_rows`), in
        the rows' order (the order an autoincrement key is given in). Each value is text, cast
        to its column's type; strings stay text (an explicit cast to VARCHAR(n) would cut a
        long value where the INSERT refuses it)."""
        rows = (
            func.jsonb_array_elements(cast(bindparam(param, type_=String), JSONB))
            .table_valued(sa_column("value", JSONB), with_ordinality="n")
            .render_derived(name="u")
        )
        values = []
        for i, name in enumerate(self.names):
            type_ = self.table.columns[name].type
            text = rows.c.value[i].astext
            values.append(text if isinstance(_base(type_), String) else cast(text, type_))
        return insert(self.table).from_select(
            self.names, select(*values).select_from(rows).order_by(rows.c.n))


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not None:  # the columns hold local wall-clock time (`models.tables`)
        raise ValueError(f"带时区的时间不能写入无时区的列：{value.isoformat()}")
    return value.isoformat()


def _float_text(value: float | None) -> float | str | None:
    # NaN and infinities are not JSON numbers; PostgreSQL reads these spellings as float8
    if value is None or value - value == 0:
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _json_text(value: Any) -> str:
    return json_dumps(value)


_TEXT_OF: dict[str, Callable[[Any], Any]] = {
    "json": _json_text, "datetime": _iso, "float": _float_text,
}


def _base(type_: Any) -> Any:
    """The SQLAlchemy type a column's type decorates (SQLModel's ``AutoString``: ``String``)."""
    return type_.impl_instance if isinstance(type_, TypeDecorator) else type_


def _kind(type_: Any) -> str:
    type_ = _base(type_)
    if isinstance(type_, JSON):
        return "json"
    if isinstance(type_, DateTime):
        return "datetime"
    if isinstance(type_, Float):
        return "float"
    return "plain"


def _memo(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    seen: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            out = seen[value] = process(value)
            return out

    return cached


def _generated(column: Any) -> bool:
    """An autoincrement integer primary key: the database fills it."""
    return bool(column.primary_key and column.autoincrement is not False
                and column.type.python_type is int and column.default is None)


class BulkInsert:
    """``INSERT INTO table`` of many rows as one driver ``executemany``. Every row must give
    every column except an autoincrement primary key."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._prepared: dict[str, _Prepared] = {}

    def prepared(self, dialect: Dialect) -> _Prepared:
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            prepared = self._prepared[dialect.name] = _Prepared(self.table, dialect)
        return prepared

    def __call__(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` in ``conn``'s transaction; a unique-key clash raises SQLAlchemy's
        `IntegrityError`, as `Connection.execute` would (the transaction must be rolled back)."""
        insert_many(conn, [(self, rows)])

    def _executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        dialect = conn.dialect
        prepared = self.prepared(dialect)
        cursor = conn.connection.cursor()
        try:
            cursor.executemany(prepared.sql, prepared.params(rows))
        except dialect.loaded_dbapi.IntegrityError as exc:
            raise IntegrityError(prepared.sql, None, exc) from exc
        finally:
            cursor.close()


def one_statement(dialect: Dialect) -> bool:
    """Whether `insert_many` writes in one statement (atomic without a transaction) on this
    dialect: PostgreSQL through psycopg."""
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


_STATEMENTS: dict[tuple[str, ...], Insert] = {}


def insert_many(
    conn: Connection, parts: Sequence[tuple[BulkInsert, Sequence[Mapping[str, Any]]]]
) -> None:
    """Insert each part's rows into its table, in ``conn``'s transaction. A unique-key clash
    raises SQLAlchemy's `IntegrityError` (roll the transaction back). Where `one_statement`
    holds, all parts are one statement: a clash writes none of them, with or without a
    transaction; errors come wrapped by SQLAlchemy (a lost connection is an
    `OperationalError` and invalidates the pool's connections, as for any other statement)."""
    parts = [(b, rows) for b, rows in parts if rows]
    if not parts:
        return
    if not one_statement(conn.dialect):
        for bulk, rows in parts:
            bulk._executemany(conn, rows)
        return
    prepared = [b.prepared(conn.dialect) for b, _ in parts]
    key = tuple(p.table.fullname for p in prepared)
    statement = _STATEMENTS.get(key)
    if statement is None:
        *first, last = [p.json_insert(f"rows_{i}") for i, p in enumerate(prepared)]
        for i, part in enumerate(first):
            last = last.add_cte(part.cte(f"w{i}"))
        statement = _STATEMENTS[key] = last
    conn.execute(statement, {
        f"rows_{i}": p.json_rows(rows)
        for i, (p, (_, rows)) in enumerate(zip(prepared, parts, strict=True))
    })


def _unserializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps builds a new C encoder on every call; reusing one halves the cost of the small
# values the JSON columns hold. Same arguments as json.dumps' defaults, except the check for
# circular references (our values come from JSON or from our own records: never circular).
_ENCODER = (
    c_make_encoder(None, _unserializable, encode_basestring_ascii, None, ": ", ", ",
                   False, False, True)
    if c_make_encoder is not None else None
)


# the same, keeping non-ASCII characters: `insert_many`'s row payloads (stored values inside them
# are `json_dumps` text, so what is stored does not depend on this encoder)
_PAYLOAD_ENCODER = (
    c_make_encoder(None, _unserializable, encode_basestring, None, ": ", ", ",
                   False, False, True)
    if c_make_encoder is not None else None
)


def _payload(value: Any) -> str:
    if _PAYLOAD_ENCODER is None:
        return json.dumps(value, ensure_ascii=False)
    return "".join(_PAYLOAD_ENCODER(value, 0))


def json_dumps(value: Any) -> str:
    """Exactly ``json.dumps(value)``, faster: the serializer of the engine's JSON columns."""
    if _ENCODER is None:
        return json.dumps(value)
    return "".join(_ENCODER(value, 0))
