"""The `onceonly` command, run as a user runs it: a separate process with its own environment.

Each process start costs about a second, so tests bundle related invocations."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from onceonly.kit.identifiers import make_uscc

ORG = make_uscc("1", "1", "341800", "0030041N")
ORG2 = make_uscc("1", "1", "341800", "0030042N")


def run(home: Path, *args: str, db_url: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    environ.update(ONCEONLY_HOME=str(home), COLUMNS="250", NO_COLOR="1", **env)
    if db_url:
        environ["ONCEONLY_DATABASE_URL"] = db_url
    return subprocess.run([sys.executable, "-c", "from onceonly.cli import main; main()", *args],
                          cwd=home, env=environ, capture_output=True, text=True, timeout=120)


def assert_ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialized SQLite home with one organization (ORG), shared by the tests of this module."""
    path = tmp_path_factory.mktemp("cli-home")
    assert "database ready" in assert_ok(run(path, "init"))
    out = assert_ok(run(path, "org", "add", ORG, "宣城市公安局", "--region", "341800", "--short-name", "公安局"))
    assert f"organization {ORG} 宣城市公安局 added; department catalog 301" in out
    return path


def test_help() -> None:
    result = subprocess.run([sys.executable, "-c", "from onceonly.cli import main; main()", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("init", "serve", "config", "org", "user", "resource", "catalog", "codelist"):
        assert command in result.stdout


def test_init_is_idempotent_and_commands_before_init_say_so(home: Path, tmp_path: Path) -> None:
    assert_ok(run(home, "init"))
    assert (home / "onceonly.db").is_file()
    assert_one_line_error(run(tmp_path, "org", "list"), "onceonly init")


def test_org_add_and_list(home: Path) -> None:
    out = assert_ok(run(home, "org", "add", ORG2.lower(), "宣城市市场监督管理局", "--parent", ORG))
    assert f"organization {ORG2} 宣城市市场监督管理局 added; department catalog 3" in out
    listed = assert_ok(run(home, "org", "list"))
    assert ORG in listed and "宣城市公安局" in listed and ORG2 in listed and "341800" in listed


@pytest.mark.parametrize(("args", "fragment"), [
    (("113418000030041N16", "坏单位"), "code: "),  # check character wrong
    (("[/bold]oops", "坏单位"), "code: "),  # looks like console markup
    ((ORG, "again"), "already exists"),
    ((make_uscc("1", "1", "341800", "0030043N"), "x", "--parent", "[/x]"), "parent organization [/x] not found"),
])
def test_org_add_errors_are_one_line(home: Path, args: tuple[str, ...], fragment: str) -> None:
    assert_one_line_error(run(home, "org", "add", *args), fragment)


def test_user_add_prints_password_once(home: Path) -> None:
    out = assert_ok(run(home, "user", "add", "secadmin", "--role", "security_admin"))
    assert "password (shown once): " in out
    password = out.strip().rsplit(": ", 1)[1]
    assert len(password) >= 12
    listed = assert_ok(run(home, "user", "list"))
    assert "secadmin" in listed and password not in listed
    assert password.encode() not in (home / "onceonly.db").read_bytes()
    assert "token (shown once): oo_" in assert_ok(run(home, "user", "token", "secadmin", "--label", "etl"))


def test_user_add_steward_needs_org(home: Path) -> None:
    assert_one_line_error(run(home, "user", "add", "steward1", "--role", "steward"), "needs an organization")
    assert "steward2 (steward) created" in assert_ok(run(home, "user", "add", "steward2", "--role", "steward",
                                                         "--org", ORG))


def test_config_show_masks_secrets(home: Path) -> None:
    out = assert_ok(run(home, "config", "show", db_url="postgresql://app:hunter2@db.example:5432/oo",
                        ONCEONLY_SECRET_KEY="very-secret-key"))
    assert "postgresql+psycopg://app:********@db.example:5432/oo" in out
    assert "hunter2" not in out and "very-secret-key" not in out
    assert "secret_key" in out and "********" in out


def test_bad_setting_is_one_line(home: Path) -> None:
    assert_one_line_error(run(home, "org", "list", ONCEONLY_PORT="eighty"), "ONCEONLY_PORT")


@pytest.mark.parametrize("url", ["postgresql://app:hunter2@127.0.0.1:{port}/x",
                                 "postgresql://app:hunter2@127.0.0.1:port/x"])
def test_unreachable_or_malformed_database_is_one_line(tmp_path: Path, url: str) -> None:
    line = assert_one_line_error(run(tmp_path, "init", db_url=url.format(port=free_port())),
                                 "ONCEONLY_DATABASE_URL")
    assert "hunter2" not in line


def test_resource_list_and_catalog_tree(home: Path) -> None:
    assert "resources" in assert_ok(run(home, "resource", "list"))
    assert "101 人口基础信息资源目录" in assert_ok(run(home, "catalog", "tree"))


def test_codelist_map(home: Path) -> None:
    csv_path = home / "sex.csv"
    csv_path.write_text("local_code,standard_code,local_name\nM,1,男\nF,2,女\n", encoding="utf-8")
    assert "2 mappings set" in assert_ok(run(home, "codelist", "map", ORG, "GB/T 2261.1", str(csv_path)))
    csv_path.write_text("local_code,standard_code\nX,7\n", encoding="utf-8")
    assert_one_line_error(run(home, "codelist", "map", ORG, "GB/T 2261.1", str(csv_path)), "entries[0].standard_code")


@pytest.mark.postgresql
def test_init_on_postgresql(pg_url: Callable[[str], str], tmp_path: Path) -> None:
    url = pg_url("cli")
    out = assert_ok(run(tmp_path, "init", db_url=url))
    assert "database ready" in out and "postgresql" in out
    assert_ok(run(tmp_path, "org", "add", ORG, "宣城市公安局", db_url=url))
    assert ORG in assert_ok(run(tmp_path, "org", "list", db_url=url))
