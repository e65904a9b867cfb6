"""`onceonly demo` from the command line: build, refuse a second build, --force, the password file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from demo_helpers import content_digest
from sqlalchemy import func, select
from typer.testing import CliRunner

from onceonly.accounts.models import User
from onceonly.catalog.models import Organization
from onceonly.db import Database
from onceonly.demo.accounts import ACCOUNTS_FILE, read_accounts_file
from onceonly.demo.cli import register
from onceonly.kit.passwords import verify_password
from onceonly.settings import get_settings, load_settings

SMALL = ["--no-serve", "--persons", "300", "--companies", "40", "--seed", "3"]


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app holding just the demo command."""

    register(app)
    return app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ONCEONLY_HOME", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _admin_password(home: Path) -> str:
    return read_accounts_file(home / ACCOUNTS_FILE)[1]["admin"]


def _open(home: Path) -> Database:
    return Database(load_settings(home=home))


def test_build_refuse_then_force(app: typer.Typer, home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["demo", *SMALL])
    assert first.exit_code == 0, first.output
    path = home / ACCOUNTS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    url, passwords = read_accounts_file(path)
    assert url == "http://127.0.0.1:8000/"
    assert url in first.output and passwords["admin"] in first.output
    assert {"admin", "secadmin", "auditor", "gongan.steward", "gongan.reviewer"} <= set(passwords)

    again = runner.invoke(app, ["demo", *SMALL])
    assert again.exit_code == 1
    assert "--force" in again.stderr and again.stderr.strip().count("\n") == 0
    assert _admin_password(home) == passwords["admin"], "a refused run leaves the home alone"

    forced = runner.invoke(app, ["demo", *SMALL, "--force", "--port", "8123"])
    assert forced.exit_code == 0, forced.output
    url2, passwords2 = read_accounts_file(path)
    assert url2 == "http://127.0.0.1:8123/"
    assert passwords2["admin"] != passwords["admin"]
    db = _open(home)
    try:
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(Organization)) == 24, "rebuilt, not doubled"
            admin = s.scalars(select(User).where(User.username == "admin")).one()
            assert verify_password(admin.password_hash, passwords2["admin"])
    finally:
        db.dispose()


def test_an_initialized_but_empty_home_is_built_into(app: typer.Typer, home: Path) -> None:
    from onceonly.ops.setup import initialize

    db = _open(home)
    initialize(db)  # what `onceonly init` leaves: schema and standard catalogs, no one's data
    db.dispose()
    result = CliRunner().invoke(app, ["demo", *SMALL])
    assert result.exit_code == 0, result.output


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["ONCEONLY_HOME"] = str(home)
    code = "import sys; sys.argv[0] = 'onceonly'; from onceonly.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_separate_processes_build_the_same_city_with_different_passwords(tmp_path: Path) -> None:
    homes = [tmp_path / "one", tmp_path / "two"]
    for h in homes:
        done = _run(h, "demo", *SMALL)
        assert done.returncode == 0, done.stderr
        assert "password:" in done.stdout
    digests = []
    for h in homes:
        db = _open(h)
        try:
            with db.session() as s:
                digests.append(content_digest(s))
        finally:
            db.dispose()
    assert digests[0] == digests[1]
    assert _admin_password(homes[0]) != _admin_password(homes[1])

    refused = _run(homes[0], "demo", *SMALL)
    assert refused.returncode == 1
    assert len(refused.stderr.strip().splitlines()) == 1 and "--force" in refused.stderr


def test_demo_credentials_call_their_services(app: typer.Typer, home: Path) -> None:
    """demo-credentials.json lists each demo system's key and services; each key works in its
    service's mode, the opening burst left audited calls, and a service outside the list is refused."""
    import json

    from fastapi.testclient import TestClient

    from onceonly.app import create_app
    from onceonly.audit.models import AuditRecord
    from onceonly.catalog.service import get_resource
    from onceonly.demo.exchange import CREDENTIALS_FILE, SERVICES
    from onceonly.store.service import fetch_rows

    result = CliRunner().invoke(app, ["demo", *SMALL])
    assert result.exit_code == 0, result.output
    path = home / CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(creds, list) and len(creds) >= 4
    assert all({"system", "api_key", "services"} <= set(c) for c in creds)
    assert sum(len(c["services"]) for c in creds) >= 8
    modes = {s.code: s.mode for s in SERVICES}
    db = _open(home)
    try:
        with db.session() as s:
            calls = s.scalar(select(func.count()).select_from(AuditRecord).where(AuditRecord.kind == "call"))
            assert calls and calls >= 50, "the opening burst is audited"
        with TestClient(create_app(db.settings, db)) as client:
            for cred in creds:
                auth = {"Authorization": f"Bearer {cred['api_key']}"}
                for code in cred["services"]:
                    if modes[code] == "query":
                        r = client.get(f"/api/v1/exchange/{code}/records", params={"limit": 2}, headers=auth)
                    elif modes[code] == "bulk":
                        r = client.get(f"/api/v1/exchange/{code}/changes", params={"since": 0, "limit": 2},
                                       headers=auth)
                    elif modes[code] == "verify":
                        spec = next(x for x in SERVICES if x.code == code)
                        with db.session() as s:
                            row = fetch_rows(s, get_resource(s, spec.resource), limit=1)[0]
                        claim = {f: row[f] for f in spec.fields[:2]}
                        r = client.post(f"/api/v1/exchange/{code}/verify", json={"records": [claim]}, headers=auth)
                        assert r.status_code == 200, r.text
                        assert r.json()["results"][0]["match"] is True
                        continue
                    else:
                        r = client.get(f"/api/v1/exchange/{code}/records/none", headers=auth)
                        assert r.status_code == 404, r.text  # authorized, just no such record
                        continue
                    assert r.status_code == 200, (code, r.text)
                others = [s.code for s in SERVICES if s.code not in cred["services"]]
                if others:
                    r = client.get(f"/api/v1/exchange/{others[0]}/records", headers=auth)
                    assert r.status_code == 403, r.text
            metrics = client.get("/metrics").text  # the calls above are counted by service, mode, status
            assert 'onceonly_exchange_calls_total{mode="verify",service="gaj-rk-verify",status_class="2xx"}' in metrics
            assert 'status_class="4xx"' in metrics
    finally:
        db.dispose()
