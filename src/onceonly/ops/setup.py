"""Bring a database to a usable state: schema, the guide's catalogs, the standard code lists."""

from __future__ import annotations

from onceonly.db import Database


def initialize(db: Database) -> None:
    """Idempotent: safe to run on every `init`, on demo builds and in tests."""
    from onceonly.catalog.codelists import load_standard_code_lists
    from onceonly.catalog.orgs import ensure_standard_catalogs
    from onceonly.ops.migrate import upgrade

    upgrade(db.engine)
    with db.session(write=True) as session:
        ensure_standard_catalogs(session)
        load_standard_code_lists(session)
