"""The build, the content check and the --force wipe on SQLite and on PostgreSQL."""

from __future__ import annotations

from demo_helpers import content_digest, published
from sqlalchemy import func, inspect, select

from onceonly.catalog.models import Organization
from onceonly.db import Database
from onceonly.demo.build import DemoOptions, build_demo
from onceonly.demo.home import existing_content, wipe

OPTIONS = DemoOptions(seed=5, persons=400, companies=40)


def test_build_wipe_and_rebuild(db: Database) -> None:
    result = build_demo(db, OPTIONS)
    assert result.departments >= 23 and result.resources >= 40
    with db.session() as s:
        assert len(published(s)) == result.resources
        assert s.scalar(select(func.count()).select_from(Organization)) == result.departments
        digest = content_digest(s)
    assert existing_content(db)

    fresh = wipe(db)
    try:
        assert existing_content(fresh) is None
        assert not [t for t in inspect(fresh.engine).get_table_names() if t.startswith("r_")]
        build_demo(fresh, OPTIONS)
        with fresh.session() as s:
            assert content_digest(s) == digest, "a rebuild after --force gives the same city"
    finally:
        if fresh is not db:
            fresh.dispose()
