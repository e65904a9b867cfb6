"""A server that starts after a crash says so: batches of dead processes become `interrupted`."""

from __future__ import annotations

from fastapi.testclient import TestClient
from ingest_factories import new_org, setup_db, simple_resource

from onceonly.app import create_app
from onceonly.db import Database
from onceonly.ingest.models import Batch


def test_server_start_marks_batches_of_dead_processes_interrupted(db: Database) -> None:
    setup_db(db)
    res = simple_resource(db, new_org(db))
    with db.session(write=True) as s:
        gone = Batch(resource_id=res.id, status="running", pid=2**22 + 54321, username="t")
        s.add(gone)
        s.flush()
        gone_id = gone.id
    with TestClient(create_app(db.settings, db)):  # the context runs the app's startup
        pass
    with db.session() as s:
        row = s.get(Batch, gone_id)
        assert row is not None and row.status == "interrupted" and row.finished_at is not None
