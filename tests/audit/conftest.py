"""Fixtures of the audit tests: a fresh migrated database per test (tampering tests ruin it), on
the backend of the module's `db`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import open_database
from onceonly.audit.writer import writer_for
from onceonly.db import Database


@pytest.fixture
def adb(db: Database, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty migrated database of its own, on the same backend as `db`."""
    url = "" if db.is_sqlite else request.getfixturevalue("pg_url")(f"a{uuid.uuid4().hex[:10]}")
    database = open_database(tmp_path / "home", url)
    yield database
    writer_for(database).close()
    database.dispose()

