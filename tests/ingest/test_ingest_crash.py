"""kill -9 in the middle of a batch, then a rerun: `onceonly ingest` runs as a real process on a
file big enough to take seconds, is killed with SIGKILL while its batch runs, and leaves the
store and change log exactly as before; the next `onceonly ingest` marks the batch interrupted
and converges — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ingest_factories import (
    PERSON_HEADER,
    batch_row,
    birth_of,
    cid,
    ingest,
    new_org,
    person_resource,
    setup_db,
    sex_of,
    snapshot,
    write_csv,
)
from sqlalchemy import func, select, text

from harness import open_database
from onceonly.catalog.service import get_resource
from onceonly.db import Database
from onceonly.ingest.models import Batch
from onceonly.store import service as store
from onceonly.store.models import ChangeLog
from onceonly.store.tables import table_for

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
ROWS = 240_000  # a second or more of loading: time to kill it half-way
SEED = 1_000  # rows stored before: half will be updated by the big file, half unchanged
KILL_AFTER = 0.5  # seconds the batch has been running when it is killed (loading takes longer)
HEADER = PERSON_HEADER[:4]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [[cid(i), f"人{i}", sex_of(i), birth_of(i).isoformat()] for i in range(ROWS)]
    return write_csv(tmp_path_factory.mktemp("crash") / "people.csv", HEADER, rows)


def cli_env(home: Path, url: str) -> dict[str, str]:
    """The environment of an operator's shell: this home, this database, nothing else of ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_HOME"] = str(home)
    if url:
        env["ONCEONLY_DATABASE_URL"] = url
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from onceonly.cli import main; main()", *args]


def run_to_end(args: list[str], env: dict[str, str]) -> dict[str, object]:
    done = subprocess.run(command(*args), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


@pytest.mark.parametrize("workers", [0, 1], ids=["in-writer", "worker-process"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_mid_batch_then_rerun_converges(backend: str, workers: int, request: pytest.FixtureRequest,
                                               tmp_path: Path, big_file: Path) -> None:
    url = request.getfixturevalue("pg_url")("crash") if backend == "postgresql" else ""
    home = tmp_path / "home"
    db = open_database(home, url)
    try:
        setup_db(db)
        res = person_resource(db, new_org(db), rules=False)
        seed = [[cid(i), f"人{i}" if i % 2 else f"旧{i}", sex_of(i), birth_of(i).isoformat()] for i in range(SEED)]
        ingest(db, res.code, write_csv(tmp_path / "seed.csv", HEADER, seed))
        before = snapshot(db, res.id)
        assert before.rows == SEED

        env = cli_env(home, url)
        env["ONCEONLY_INGEST_WORKERS"] = str(workers)
        args = ["ingest", str(big_file), "--resource", res.code, "--json"]
        proc = subprocess.Popen(command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            killed, children = _kill_once_running(db, res.id, proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)  # reaped: its pid is gone, as after a real crash
            proc.stdout.close()  # type: ignore[union-attr]
            proc.stderr.close()  # type: ignore[union-attr]
        assert proc.returncode == -signal.SIGKILL
        assert bool(children) == bool(workers)  # the checking worker (and multiprocessing's tracker)
        _wait_gone(children)  # leave with the writer

        # The killed batch: still `running` on record, and nothing of it in the store or change log.
        assert batch_row(db, killed).status == "running"
        assert snapshot(db, res.id) == before

        # The next `onceonly ingest` marks it interrupted, then loads the file to completion.
        report = run_to_end(args, env)
        assert report["status"] == "committed"
        assert (report["read"], report["inserted"], report["updated"], report["unchanged"], report["rejected"]) == (
            ROWS, ROWS - SEED, SEED // 2, SEED // 2, 0)
        gone = batch_row(db, killed)
        assert gone.status == "interrupted" and gone.error and gone.finished_at is not None
        after = _counts(db, res.id)
        assert after == {"rows": ROWS, "keys": ROWS, "log": len(before.changes) + ROWS - SEED // 2,
                         "killed_log": 0}, "every row present once; the killed batch logged nothing"

        # A third run changes nothing.
        third = run_to_end(args, env)
        assert (third["unchanged"], third["inserted"], third["updated"]) == (ROWS, 0, 0)
        assert _counts(db, res.id) == after
    finally:
        db.dispose()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_gone(pids: list[int], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"process {pid} outlived the killed ingest")


def _kill_once_running(db: Database, res_id: int, proc: subprocess.Popen[bytes]) -> tuple[int, list[int]]:
    """SIGKILL the process once its batch has been `running` for KILL_AFTER seconds."""
    seen: float | None = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the ingest ended before it could be killed: {proc.communicate()}"
        with db.session() as s:
            batch = s.scalars(select(Batch).where(Batch.resource_id == res_id, Batch.pid == proc.pid)).first()
            status = batch.status if batch else None
            batch_id = batch.id if batch else None
        if status == "running":
            seen = seen or time.monotonic()
            if time.monotonic() - seen >= KILL_AFTER and _writing(db):
                children = _children(proc.pid)
                os.kill(proc.pid, signal.SIGKILL)
                assert batch_id is not None
                return batch_id, children
        time.sleep(0.05)
    raise AssertionError("the batch never showed as running")


def _writing(db: Database) -> bool:
    """PostgreSQL shows it: another session of this database holds an uncommitted transaction
    that has written (it has an xid) — the batch is loading rows. SQLite cannot tell."""
    if db.is_sqlite:
        return True
    with db.session() as s:
        return bool(s.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL")).scalar())


def _counts(db: Database, res_id: int) -> dict[str, int]:
    with db.session() as s:
        res = get_resource(s, res_id)
        table = table_for(res)
        conn = s.connection()
        keys = conn.execute(select(func.count(func.distinct(table.c.citizen_id)))).scalar_one()
        log = s.scalar(select(func.count()).select_from(ChangeLog).where(ChangeLog.resource_id == res_id))
        interrupted = select(Batch.id).where(Batch.resource_id == res_id, Batch.status == "interrupted")
        killed_log = s.scalar(select(func.count()).select_from(ChangeLog).where(ChangeLog.batch_id.in_(interrupted)))
        return {"rows": store.row_count(s, res), "keys": int(keys), "log": int(log or 0),
                "killed_log": int(killed_log or 0)}
