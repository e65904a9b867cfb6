"""Shared fixtures: every storage test runs on SQLite and on a throwaway PostgreSQL.

Fixtures (see tests/harness.py for the machinery):

- ``db``         module-scoped, parametrized sqlite/postgresql: a migrated ``Database``.
- ``sqlite_db``  module-scoped: a migrated SQLite ``Database`` only.
- ``pg_url``     module-scoped factory ``pg_url(name) -> URL`` of a fresh, empty PG database.
- ``pg_database`` module-scoped URL of an empty PG database named after the test module.
- ``pg_server``  session-scoped ``PgServer`` (one per xdist worker).

PostgreSQL-backed tests carry the ``postgresql`` mark (``-m "not postgresql"`` deselects them).
Without PostgreSQL they are skipped, except under CI=true where they fail: CI must not go green
on half the backends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness import PgServer, PgUnavailable, database_name, in_ci, open_database, start_server
from onceonly.db import Database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]

_scratch_home: str | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Keep tests hermetic: a developer's ONCEONLY_* shell settings or var/ must not leak in."""
    global _scratch_home
    config.addinivalue_line("markers", "postgresql: needs the throwaway PostgreSQL server")
    for name in list(os.environ):
        if name.startswith("ONCEONLY_") and not name.startswith("ONCEONLY_TEST_"):
            del os.environ[name]
    _scratch_home = tempfile.mkdtemp(prefix="onceonly-home-")
    os.environ["ONCEONLY_HOME"] = _scratch_home


def pytest_unconfigure(config: pytest.Config) -> None:
    if _scratch_home:
        shutil.rmtree(_scratch_home, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server per pytest process; skipped (or failed under CI) if unavailable."""
    try:
        server, cluster = start_server()
    except PgUnavailable as exc:
        if in_ci():
            pytest.fail(f"PostgreSQL is required when CI=true: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    try:
        yield server
    finally:
        server.close()
        if cluster is not None:
            cluster.stop()


@pytest.fixture(scope="module")
def pg_database(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[str]:
    """URL of an empty database named after the test module, dropped after the module."""
    name = database_name(request.module.__name__)
    url = pg_server.create_database(name)
    yield url
    pg_server.drop_database(name)


@pytest.fixture(scope="module")
def pg_url(request: pytest.FixtureRequest, pg_server: PgServer) -> Iterator[Callable[[str], str]]:
    """Factory: ``pg_url("cli")`` gives the URL of a fresh empty database, dropped after the module.

    Calling it again with the same name recreates the database empty. Handy for tests that pass
    the URL on (ONCEONLY_DATABASE_URL for a CLI subprocess) and migrate it themselves.
    """
    created: set[str] = set()

    def make(name: str) -> str:
        db_name = database_name(request.module.__name__, name)
        created.add(db_name)
        return pg_server.create_database(db_name)

    yield make
    for db_name in created:
        pg_server.drop_database(db_name)


@pytest.fixture(scope="module", params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated Database on each backend, shared by the tests of one module."""
    url = request.getfixturevalue("pg_database") if request.param == "postgresql" else ""
    database = open_database(tmp_path_factory.mktemp(f"home-{request.param}"), url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated SQLite Database, for tests about SQLite-only behaviour."""
    database = open_database(tmp_path_factory.mktemp("home-sqlite"))
    yield database
    database.dispose()


@pytest.fixture
def fresh_db(db: Database, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated and initialized database on the same backend as `db` (round trips)."""
    from onceonly.ops.setup import initialize

    url = "" if db.is_sqlite else request.getfixturevalue("pg_url")(f"fresh{uuid.uuid4().hex[:8]}")
    other = open_database(tmp_path / "fresh-home", url)
    initialize(other)
    yield other
    other.dispose()
