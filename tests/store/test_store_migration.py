"""Migration 0005 gives resource tables published before it the `_digest` column, rows intact."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from onceonly.ops import migrate

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_0005_adds_the_digest_column_to_existing_resource_tables(backend: str, request: pytest.FixtureRequest,
                                                                 tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url")("mig5") if backend == "postgresql" else f"sqlite:///{tmp_path}/m.db"
    engine = create_engine(url)
    try:
        migrate.upgrade(engine, "0004")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE r_people_v1 (id VARCHAR(10) PRIMARY KEY, _version INTEGER NOT NULL)")
            conn.exec_driver_sql("INSERT INTO r_people_v1 VALUES ('a', 3)")
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert "_digest" in {c["name"] for c in inspect(engine).get_columns("r_people_v1")}
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT id, _version, _digest FROM r_people_v1").all() == [("a", 3, None)]
        migrate.upgrade(engine)  # a rerun converges
    finally:
        engine.dispose()
