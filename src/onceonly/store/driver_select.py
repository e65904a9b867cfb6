"""A SELECT compiled once and run straight on the driver's cursor.

For the statements the exchange runs on every call (a row by its key), SQLAlchemy's execution
path — execution context, cursor wrapper, result object — costs several times what the
database takes to answer. `DriverSelect` compiles the statement once per dialect, keeps the
type conversions SQLAlchemy would apply (bind and result processors, e.g. dates stored as text
on SQLite) and then only binds, executes and converts. Values are still bound as parameters."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class DriverSelect:
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order (qmark, format); None: named (pyformat)
    constants: Mapping[str, Any]  # values bound at build time (e.g. a row filter's), processed
    binds: Mapping[str, Processor]  # the processors of the parameters given per execution
    names: tuple[str, ...]
    types: tuple[Any, ...]  # the selected columns' types for this dialect
    results: list[tuple[Processor, ...]]  # filled on first run: processors depend on the driver's type codes
    dialect: Dialect

    @classmethod
    def build(cls, stmt: Select[Any], dialect: Dialect, given: Collection[str]) -> DriverSelect:
        """`given`: the names of the parameters `first` is given each time; every other one is
        bound now, with the value it has in `stmt` (lists of IN are rendered one parameter each)."""
        compiled = stmt.params({name: None for name in given}).compile(dialect=dialect)  # placeholders
        missing = set(given) - set(compiled.binds)
        if missing:
            raise ValueError(f"the statement has no parameter {sorted(missing)[0]}")
        state = compiled.construct_expanded_state()  # the IN lists rendered, one parameter per value
        processors: dict[str, Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()}
        processors.update(state.processors)
        constants = {name: _processed(processors.get(name), value) for name, value in state.parameters.items()
                     if name not in given}
        positional = tuple(state.positiontup) if state.positiontup is not None else None
        names = tuple(str(col.key) for col in stmt.selected_columns)
        types = tuple(col.type.dialect_impl(dialect) for col in stmt.selected_columns)
        return cls(state.statement, positional, constants, {n: processors.get(n) for n in given}, names, types, [],
                   dialect)

    def first(self, conn: Connection, values: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict of typed values (None if there is none), in the connection's
        current transaction."""
        params = dict(self.constants)
        for name, process in self.binds.items():
            params[name] = _processed(process, values[name])
        bound = [params[n] for n in self.positional] if self.positional is not None else params
        row, description = driver_fetchone(conn, self.sql, bound)
        if not self.results:
            self.results.append(tuple(t.result_processor(self.dialect, d[1])
                                      for t, d in zip(self.types, description, strict=True)))
        if row is None:
            return None
        return {name: value if process is None or value is None else process(value)
                for name, process, value in zip(self.names, self.results[0], row, strict=True)}


def _processed(process: Processor, value: Any) -> Any:
    return value if process is None or value is None else process(value)


def driver_fetchone(conn: Connection, sql: str, params: Any = ()) -> tuple[Any, Any]:
    """Run one statement on the connection's driver in its current transaction: (first row or
    None, cursor description). Driver errors come out as SQLAlchemy's (OperationalError,
    DataError, …, as the app's error handlers expect), and a lost connection is invalidated so
    the pool does not hand it out again — what SQLAlchemy's own execution would have done."""
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = None
    try:
        cur = raw.cursor()
        cur.execute(sql, params)
        return cur.fetchone(), cur.description
    except conn.dialect.loaded_dbapi.Error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cur)
        if lost:
            conn.invalidate(exc)
        raise DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=lost,
                                  dialect=conn.dialect) from exc
    finally:
        if cur is not None:
            cur.close()
