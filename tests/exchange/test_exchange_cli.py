"""`onceonly exchange …` as an operator runs it on each backend: systems, keys, services,
application decisions, grants; one-line errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from exchange_factories import World, application_in, fresh, ready, world
from typer.testing import CliRunner, Result

from core_factories import unique
from onceonly import cli
from onceonly.db import Database
from onceonly.exchange import applications, credentials
from onceonly.exchange.cli import exchange_app
from onceonly.exchange.models import Application, Grant
from onceonly.settings import get_settings


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app holding the exchange commands."""

    app.add_typer(exchange_app, name="exchange")
    return app


@pytest.fixture
def run(app: typer.Typer, db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    ready(db)
    monkeypatch.setenv("ONCEONLY_HOME", str(db.settings.home))
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", db.url)
    monkeypatch.setattr(cli.console, "width", 250)  # the console was sized at import; tables need room
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: Any) -> Result:
        return runner.invoke(app, ["exchange", *[str(a) for a in args]], env={"COLUMNS": "250", "NO_COLOR": "1"})

    yield invoke
    get_settings.cache_clear()


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, (result.stdout, result.stderr)
    text = result.stderr.strip()
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    return text


def test_systems_and_keys(run: Any, db: Database) -> None:
    w = world(db)
    code = unique("cli").replace("_", "-")
    out = ok(run("system", "create", code, "社保系统", "--org", w.consumer.code, "--contact", "王工", "--signing"))
    assert f"system {code} created" in out and "signing secret (shown once): oos_" in out
    assert code in ok(run("system", "list"))
    assert "already exists" in one_line_error(run("system", "create", code, "x", "--org", w.consumer.code))
    assert "code:" in one_line_error(run("system", "create", "'; DROP", "x", "--org", w.consumer.code))
    key_line = ok(run("key", "create", code, "--days", "30"))
    key_id, key = re.search(r"key (\d+) for .*: (ook_\S+)", key_line).groups()  # type: ignore[union-attr]
    with db.session(write=True) as s:
        assert credentials.authenticate_key(s, key).code == code
    rotated = ok(run("key", "rotate", key_id, "--overlap-hours", "0"))
    new_key = rotated.split("(shown once): ")[1].strip()
    with db.session(write=True) as s:
        assert credentials.authenticate_key(s, new_key).code == code
    listed = ok(run("key", "list", code))
    assert "rotated" in listed and "active" in listed and key not in listed
    new_id = re.search(r"key (\d+) replaces", rotated).group(1)  # type: ignore[union-attr]
    assert f"key {new_id} revoked" in ok(run("key", "revoke", new_id, "--reason", "test"))
    assert "already revoked" in one_line_error(run("key", "revoke", new_id))
    assert "not found" in one_line_error(run("key", "rotate", "999999999"))


def test_services_decisions_and_grants(run: Any, db: Database) -> None:
    w: World = world(db)
    out = ok(run("service", "publish", w.person.code, "--mode", "verify", "--fields", "citizen_id,name",
                 "--name", "身份核验"))
    code = re.search(r"service (\S+) \(verify\)", out).group(1)  # type: ignore[union-attr]
    assert code in ok(run("service", "list", "--provider", w.provider.code, "--mode", "verify"))
    assert "has no field" in one_line_error(run("service", "publish", w.person.code, "--mode", "query", "--fields",
                                                "nope", "--name", "x"))
    with db.session(write=True) as s:
        system, svc = fresh(s, w.system), fresh(s, w.person_service)
        app = applications.apply(s, w.consumer_steward, system, svc,
                                 application_in(system, svc, ["citizen_id", "name", "region", "household"]))
        app_id = app.id
    assert str(app_id) in ok(run("application", "list", "--status", "pending_provider"))
    assert "needs a reason" in one_line_error(run("application", "decide", app_id, "reject"))
    assert "takes FIELD=VALUE" in one_line_error(run("application", "decide", app_id, "approve", "--mask", "x"))
    assert "takes integers" in one_line_error(run("application", "decide", app_id, "approve", "--filter",
                                                  "household=a"))
    out = ok(run("application", "decide", app_id, "approve", "--fields", "citizen_id,name,household",
                 "--mask", "name=name", "--filter", "household=1,3", "--rate-limit", "5", "--daily-quota", "9"))
    assert f"application {app_id} is pending_operator" in out
    out = ok(run("application", "decide", app_id, "approve"))
    assert f"application {app_id} is approved; grant" in out
    with db.session() as s:
        stored = s.get(Application, app_id)
        grant = s.get(Grant, stored.grant_id)  # type: ignore[union-attr]
        assert grant is not None
        assert grant.fields == ["citizen_id", "name", "household"] and grant.row_filter == {"household": [1, 3]}
        assert grant.masking == {"name": "name"} and (grant.rate_limit, grant.daily_quota) == (5, 9)
        grant_id = grant.id
    listed = ok(run("grant", "list", "--system", w.system.code))
    assert str(grant_id) in listed and "name=name" in listed
    assert "say why" in one_line_error(run("grant", "revoke", grant_id, "--reason", " "))
    assert f"grant {grant_id} revoked" in ok(run("grant", "revoke", grant_id, "--reason", "结束"))
    assert str(grant_id) not in ok(run("grant", "list", "--system", w.system.code))
    assert str(grant_id) in ok(run("grant", "list", "--system", w.system.code, "--all"))
    assert f"service {code} retired" in ok(run("service", "retire", code))
    assert "not found" in one_line_error(run("grant", "list", "--system", "nope-nope"))
