"""kill -9 of the server under load: the deployed server (uvicorn, 2 workers) answers `api` calls
from several client threads, is killed with SIGKILL — the whole process group, mid-traffic — and
every call that was answered has its audit record, and the audit chain still verifies (SQLite and
PostgreSQL)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from exchange_factories import PERSON_ROWS, add_service, approved, fresh, ready, world
from sqlalchemy import select

from harness import open_database
from onceonly.audit.models import AuditRecord

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
FIELDS = ["citizen_id", "name", "sex"]
THREADS = 6
MIN_ANSWERED = 60  # calls answered before the kill


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_HOME"] = str(home)
    if url:
        env["ONCEONLY_DATABASE_URL"] = url
    return env


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_under_load_leaves_every_answered_call_audited(backend: str, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    url = request.getfixturevalue("pg_url")("xcrash") if backend == "postgresql" else ""
    home = tmp_path / "home"
    db = open_database(home, url)
    try:
        ready(db)
        w = world(db)
        with db.session(write=True) as s:
            service = add_service(s, fresh(s, w.person), mode="api", fields=FIELDS)
            s.expunge(service)
        approved(w, FIELDS, service=service, rate_limit=100_000, daily_quota=1_000_000_000)
    finally:
        db.dispose()

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "onceonly.app:create_app", "--factory", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--log-level", "warning"],
        env=_env(home, url), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        answered: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(n: int) -> None:
            with httpx.Client(base_url=base, timeout=5,
                              headers={"Authorization": f"Bearer {w.key}"}) as http:
                i = 0
                while not stop.is_set():
                    purpose = f"t{n}-{i}"
                    i += 1
                    key = PERSON_ROWS[i % len(PERSON_ROWS)]["citizen_id"]
                    try:
                        r = http.get(f"/api/v1/exchange/{service.code}/records/{key}",
                                     headers={"X-OnceOnly-Purpose": purpose})
                    except httpx.HTTPError:
                        continue  # the server is gone: this call was not answered
                    if r.status_code == 200:
                        with lock:
                            answered.append(purpose)

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(THREADS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while len(answered) < MIN_ANSWERED and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(answered) >= MIN_ANSWERED, "the server answered too few calls"
        os.killpg(server.pid, signal.SIGKILL)  # the supervisor and both workers, mid-traffic
        server.wait(timeout=30)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=10)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        if server.stderr:
            server.stderr.close()

    db = open_database(home, url)
    try:
        with db.session() as s:
            audited = set(s.scalars(select(AuditRecord.purpose).where(
                AuditRecord.kind == "call", AuditRecord.service == service.code, AuditRecord.status == 200)))
        missing = [p for p in answered if p not in audited]
        assert not missing, f"{len(missing)} of {len(answered)} answered calls have no audit record: {missing[:5]}"
    finally:
        db.dispose()
    verified = subprocess.run([sys.executable, "-c", "from onceonly.cli import main; main()", "audit", "verify"],
                              env=_env(home, url), capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, (server.stderr.read() if server.stderr else b"").decode()[-2000:]
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not come up")
