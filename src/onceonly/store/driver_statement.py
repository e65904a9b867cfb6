"""A statement compiled once and run straight on the driver's cursor.

For the statements the exchange runs on every call (a row by its key) and the audit writer on
every group commit (the chain head, the records, the usage counters), SQLAlchemy's execution
path — cache key, execution context, cursor wrapper, result object — costs several times what
the database takes to answer. `DriverStatement` compiles a statement once per dialect, keeps the
type conversions SQLAlchemy would apply (bind and result processors, e.g. dates stored as text
on SQLite, JSON) and then only binds, executes and converts. Values are still bound as
parameters. It runs in the connection's current transaction: the caller begins and ends it."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class DriverStatement:
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order (qmark, format); None: named (pyformat)
    constants: Mapping[str, Any]  # values bound at build time (e.g. a row filter's), processed
    binds: Mapping[str, Processor]  # the processors of the parameters given per execution
    names: tuple[str, ...]  # the result columns (a select's, or an INSERT/UPDATE's RETURNING)
    types: tuple[Any, ...]  # their types for this dialect
    results: list[tuple[Processor, ...]]  # filled on first run: processors depend on the driver's type codes
    dialect: Dialect

    @classmethod
    def build(cls, stmt: ClauseElement, dialect: Dialect, given: Collection[str]) -> DriverStatement:
        """`given`: the names of the parameters each execution is given; every other one is
        bound now, with the value it has in `stmt` (lists of IN are rendered one parameter each).
        An INSERT or UPDATE names its values as `bindparam`s (`values(x=bindparam("x"))`)."""
        compiled = cast(SQLCompiler, stmt.compile(dialect=dialect))
        missing = set(given) - set(compiled.binds)
        if missing:
            raise ValueError(f"the statement has no parameter {sorted(missing)[0]}")
        # The IN lists rendered, one parameter per value; the given ones as placeholders.
        state = compiled.construct_expanded_state({name: None for name in given})
        processors: dict[str, Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()}
        processors.update(state.processors)
        constants = {name: _processed(processors.get(name), value) for name, value in state.parameters.items()
                     if name not in given}
        positional = tuple(state.positiontup) if state.positiontup is not None else None
        columns = list(stmt.exported_columns)  # type: ignore[attr-defined]
        names = tuple(str(col.key) for col in columns)
        types = tuple(col.type.dialect_impl(dialect) for col in columns)
        return cls(state.statement, positional, constants, {n: processors.get(n) for n in given}, names, types, [],
                   dialect)

    def bound(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters for one execution."""
        params = dict(self.constants)
        for name, process in self.binds.items():
            params[name] = _processed(process, values[name])
        return [params[n] for n in self.positional] if self.positional is not None else params

    def first(self, conn: Connection, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict of typed values (None if there is none), in the connection's
        current transaction."""
        described = bool(self.results)
        row, description = driver_run(conn, self.sql, self.bound(values), fetch=True, describe=not described)
        if not described:  # psycopg builds the description anew each time it is asked for
            self.results.append(tuple(t.result_processor(self.dialect, d[1])
                                      for t, d in zip(self.types, description, strict=True)))
        if row is None:
            return None
        return {name: value if process is None or value is None else process(value)
                for name, process, value in zip(self.names, self.results[0], row, strict=True)}

    def execute(self, conn: Connection, values: Mapping[str, Any]) -> None:
        """Run a statement that returns nothing (an UPDATE, a DELETE)."""
        driver_run(conn, self.sql, self.bound(values))

    def executemany(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run a statement that returns nothing once per row, in one driver call."""
        driver_run(conn, self.sql, [self.bound(row) for row in rows], many=True)


_STATEMENTS: dict[tuple[str, str], DriverStatement] = {}


def statement(conn: Connection, name: str, make: Callable[[], ClauseElement],
              given: Collection[str]) -> DriverStatement:
    """The fixed statement called `name`, built by `make` once per dialect."""
    key = (conn.dialect.name, name)
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = DriverStatement.build(make(), conn.dialect, given)
    return found


def _processed(process: Processor, value: Any) -> Any:
    """As SQLAlchemy binds: None too goes through the processor (JSON stores it as `null`)."""
    return value if process is None else process(value)


def driver_fetchone(conn: Connection, sql: str, params: Any = ()) -> tuple[Any, Any]:
    """Run one statement on the connection's driver in its current transaction: (first row or
    None, cursor description). Driver errors come out as SQLAlchemy's (OperationalError,
    DataError, …, as the app's error handlers expect), and a lost connection is invalidated so
    the pool does not hand it out again — what SQLAlchemy's own execution would have done."""
    return driver_run(conn, sql, params, fetch=True, describe=True)


_CURSOR_KEY = "onceonly.cursor"


def driver_run(conn: Connection, sql: str, params: Any = (), *, many: bool = False, fetch: bool = False,
               describe: bool = False) -> tuple[Any, Any]:
    """`driver_fetchone`, or (`many`) one statement run once per parameter set; without
    `fetch`, (None, None); without `describe`, no description.

    On PostgreSQL the connection keeps one cursor between statements: a psycopg cursor copies
    the connection's adapters when it is made, and its results are already fetched, so it holds
    nothing on the server. A SQLite cursor is closed after each statement, which resets a
    statement not stepped to its end (it would keep its read snapshot).

    Like `Connection.execute`, it begins the connection's transaction if none is open, so
    SQLAlchemy commits or rolls back what it runs."""
    if not conn.in_transaction():
        conn.begin()
    raw = conn.connection.driver_connection
    assert raw is not None
    keep = conn.dialect.name == "postgresql"
    cur = None
    try:
        if keep:
            kept = conn.connection.info.get(_CURSOR_KEY)
            cur = kept[1] if kept is not None and kept[0] is raw and not kept[1].closed else None
        if cur is None:
            cur = raw.cursor()
            if keep:
                conn.connection.info[_CURSOR_KEY] = (raw, cur)
        if many:
            cur.executemany(sql, params)
        else:
            cur.execute(sql, params)
        if not fetch:
            return None, None
        return cur.fetchone(), (cur.description if describe else None)
    except conn.dialect.loaded_dbapi.Error as exc:
        keep = False  # a cursor that failed is not kept
        conn.connection.info.pop(_CURSOR_KEY, None)
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cur)
        if lost:  # as SQLAlchemy does: every connection opened before is replaced, then this one
            conn.engine.pool._invalidate(conn.connection, exc)
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=lost,
                                  dialect=conn.dialect) from exc
    except BaseException:
        keep = False  # interrupted: the cursor's state is unknown
        conn.connection.info.pop(_CURSOR_KEY, None)
        raise
    finally:
        if cur is not None and not keep:
            cur.close()
