"""Bulk inserts (批量写入) for the write path of `Store.dispatch_batch`.

`Connection.execute(insert(table), rows)` spends most of its time per row in SQLAlchemy's
parameter bookkeeping (a dict of every bind per row, then a second pass for the type
processors), more than SQLite spends inserting the row. `BulkInsert` does the same insert as
one ``executemany`` (on PostgreSQL with psycopg, one ``COPY``) on the driver's cursor of the
same connection and transaction: the statement is compiled by SQLAlchemy once per dialect
(bound parameters only, no SQL built from strings here), and each row's values go through the
same dialect type processors (JSON, DateTime, Boolean) that SQLAlchemy would apply, so what is
stored is the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError

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
        self.table_name = table.name
        self.names = names
        unknown = set(names) - set(keys)
        if unknown:  # an escaped bind name: never the case for this project's columns
            raise ValueError(f"表 {table.name} 的参数名无法对应到列：{sorted(unknown)}")
        self.columns: list[tuple[str, Processor, bool]] = [
            (name, table.columns[name].type.dialect_impl(dialect).bind_processor(dialect),
             not isinstance(table.columns[name].type, JSON))
            for name in names
        ]

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
        """The rows' values in `names` order (positional parameters, COPY)."""
        cols = self._processors()
        return [tuple([p(r[k]) if p else r[k] for k, p in cols]) for r in rows]


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

    def __call__(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert ``rows`` in ``conn``'s transaction; a unique-key clash raises SQLAlchemy's
        `IntegrityError`, as `Connection.execute` would (the transaction must be rolled back)."""
        if not rows:
            return
        dialect = conn.dialect
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            prepared = self._prepared[dialect.name] = _Prepared(self.table, dialect)
        cursor = conn.connection.cursor()
        try:
            if dialect.name == "postgresql" and dialect.driver == "psycopg":
                _copy(cursor, prepared, rows)
            else:
                cursor.executemany(prepared.sql, prepared.params(rows))
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, cursor, prepared.sql, exc) from exc
        finally:
            cursor.close()


def _wrapped(conn: Connection, cursor: Any, statement: str, exc: Exception) -> DBAPIError:
    """The driver's error as SQLAlchemy's, as `Connection.execute` would raise it: a unique-key
    clash is an `IntegrityError`, a lost server an `OperationalError` with the connection
    invalidated (so a worker retries it as transient, `streams.faults.is_transient`, and the
    pool replaces the connection)."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
    if lost:
        conn.invalidate(exc)
    return DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error,
                               connection_invalidated=lost, dialect=dialect)


def _copy(cursor: Any, prepared: _Prepared, rows: Sequence[Mapping[str, Any]]) -> None:
    """The rows through PostgreSQL's ``COPY … FROM STDIN``: psycopg buffers them and sends a
    few large writes. Its ``executemany`` runs in pipeline mode and waits on the socket once
    per row, giving up the GIL each time; in a Kafka worker the event loop then holds it for up
    to the switch interval, so a batch's write took several times its own work. Same
    constraints and triggers as the INSERT (a duplicate key fails the whole COPY, and the
    transaction must be rolled back as after the INSERT); the table and column names come from
    the table's metadata, composed as identifiers."""
    from psycopg import sql

    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(prepared.table_name),
        sql.SQL(", ").join(sql.Identifier(n) for n in prepared.names),
    )
    with cursor.copy(statement) as copy:
        for row in prepared.tuples(rows):
            copy.write_row(row)
