"""Where exchange calls read (`Database.reads_on_loop`): on the event loop when the database
answers from this host — SQLite, PostgreSQL over a unix socket or loopback — else in a worker
thread, so a remote server's round trips never hold the loop; the setting can force either."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import make_url

from onceonly.db import Database, on_this_host
from onceonly.settings import Settings

PG = "postgresql+psycopg://onceonly:secret@"


@pytest.fixture(autouse=True)
def _no_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PGHOST", "PGHOSTADDR", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("url", "local"), [
    ("sqlite:///var/onceonly.db", True),
    (f"{PG}127.0.0.1:5432/onceonly", True),
    (f"{PG}127.0.0.2/onceonly", True),  # all of 127.0.0.0/8 is loopback
    (f"{PG}localhost/onceonly", True),
    (f"{PG}LOCALHOST/onceonly", True),
    (f"{PG}[::1]:5432/onceonly", True),
    (f"{PG}/onceonly?host=/run/postgresql", True),  # a unix socket directory
    (f"{PG}/onceonly?host=/run/postgresql,127.0.0.1", True),  # libpq's list
    (f"{PG}/onceonly?host=localhost:5432&host=[::1]:5433", True),  # SQLAlchemy's multi-host form
    (f"{PG}/onceonly", True),  # libpq's default: the unix socket
    (f"{PG}db.internal/onceonly", False),
    (f"{PG}10.20.30.40:5432/onceonly", False),
    (f"{PG}[2001:db8::1]/onceonly", False),
    (f"{PG}/onceonly?host=/run/postgresql,db.internal", False),  # one remote host of a list is enough
    (f"{PG}/onceonly?host=localhost:5432&host=db.internal:5432", False),
    (f"{PG}localhost.example.org/onceonly", False),
    (f"{PG}localhost/onceonly?hostaddr=10.1.2.3", False),  # libpq connects to hostaddr
    (f"{PG}localhost/onceonly?host=db.internal", False),  # psycopg is given both hosts
    (f"{PG}/onceonly?service=exchange", False),  # a service file's host is not known here
])
def test_a_database_on_this_host_is_read_on_the_loop(url: str, local: bool) -> None:
    assert on_this_host(make_url(url)) is local


@pytest.mark.parametrize(("variable", "value", "local"), [
    ("PGHOST", "/var/run/postgresql", True), ("PGHOST", "127.0.0.1", True), ("PGHOST", "db.internal", False),
    ("PGHOSTADDR", "10.1.2.3", False), ("PGSERVICE", "exchange", False)])
def test_without_a_host_in_the_url_libpq_s_environment_decides(variable: str, value: str, local: bool,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    assert on_this_host(make_url(f"{PG}/onceonly")) is local


@pytest.mark.parametrize(("url", "setting", "on_loop"), [
    ("", "auto", True),
    ("", "never", False),
    (f"{PG}db.internal/onceonly", "auto", False),
    (f"{PG}db.internal/onceonly", "always", True),
    (f"{PG}127.0.0.1/onceonly", "auto", True),
    (f"{PG}127.0.0.1/onceonly", "never", False),
])
def test_the_setting_forces_either_way(tmp_path: Path, url: str, setting: str, on_loop: bool) -> None:
    db = Database(Settings(home=tmp_path, database_url=url, exchange_reads_on_loop=setting))  # no connection made
    try:
        assert db.reads_on_loop is on_loop
        assert db.loop_reads_now() is on_loop
    finally:
        db.dispose()


def test_an_unknown_setting_value_is_refused_naming_it(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exchange_reads_on_loop"):
        Settings(home=tmp_path, exchange_reads_on_loop="sometimes")
