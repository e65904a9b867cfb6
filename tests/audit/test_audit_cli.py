"""`onceonly audit …` as an operator or auditor runs it: exit codes, one-line errors, what
verify says about a broken log, exports, checkpoints, pruning and the retention setting."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from audit_factories import calls, tamper
from typer.testing import CliRunner, Result

from onceonly.audit.cli import BROKEN, audit_app
from onceonly.audit.keys import KeyPair, PublicKey
from onceonly.db import Database, utcnow
from onceonly.errors import ConfigError
from onceonly.settings import get_settings, load_settings

Run = Callable[..., Result]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app holding the audit commands."""

    app.add_typer(audit_app, name="audit")
    return app


@pytest.fixture
def run(app: typer.Typer, adb: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """run(*args) → Result of `audit ARGS` on a fresh database of this backend."""
    monkeypatch.setenv("ONCEONLY_HOME", str(adb.settings.home))
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", adb.url)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: Any) -> Result:
        return runner.invoke(app, ["audit", *[str(a) for a in args]], env={"COLUMNS": "200", "NO_COLOR": "1"})

    yield invoke
    get_settings.cache_clear()


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    text = result.stderr.strip()
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    return text


def test_verify_intact(run: Run, adb: Database) -> None:
    assert "audit log intact: no records" in ok(run("verify"))
    calls(adb, 12, checkpoint_every=5)
    out = ok(run("verify"))
    assert "12 records (seq 1–12)" in out and "1 checkpoint signature(s) valid" in out
    report = json.loads(ok(run("verify", "--json")))
    assert report["ok"] is True and report["records"] == 12


@pytest.mark.parametrize(("statement", "expected"), [
    ("UPDATE audit_records SET status = 500 WHERE seq = 4", "record altered: hash mismatch at seq 4"),
    ("DELETE FROM audit_records WHERE seq = 5", "seq 5 missing after seq 4: records were deleted"),
    ("UPDATE audit_checkpoints SET hash = prev_hash", "checkpoint at seq"),
])
def test_verify_broken_names_the_place(run: Run, adb: Database, statement: str, expected: str) -> None:
    calls(adb, 8, checkpoint_every=8)
    if "checkpoints" in statement:
        statement = "UPDATE audit_checkpoints SET hash = (SELECT prev_hash FROM audit_records WHERE seq = 8)"
    tamper(adb, statement)
    result = run("verify")
    message = one_line_error(result, BROKEN)
    assert message.startswith("error: audit log BROKEN: ") and expected in message
    as_json = run("verify", "--json")
    assert as_json.exit_code == BROKEN and json.loads(as_json.stdout)["ok"] is False


def test_verify_with_another_public_key(run: Run, adb: Database, tmp_path: Path) -> None:
    calls(adb, 3, checkpoint_every=3)
    pem = tmp_path / "other.pem"
    pem.write_text(KeyPair.from_private(bytes.fromhex("42" * 32)).public.pem)
    message = one_line_error(run("verify", "--public-key", pem), BROKEN)
    assert "not by the platform key" in message
    (tmp_path / "junk.pem").write_text("junk")
    assert "junk.pem" in one_line_error(run("verify", "--public-key", tmp_path / "junk.pem"))


def test_list(run: Run, adb: Database) -> None:
    calls(adb, 4, system="sys-a", purpose="案件-9")
    calls(adb, 2, system="sys-b", status=500)
    out = ok(run("list"))
    assert "seq" in out and "500" in out and len(out.splitlines()) >= 6 + 4  # rows and table chrome
    first = json.loads(ok(run("list", "--json", "--limit", "1")))
    assert first["system"] == "sys-a" and first["purpose"] == "案件-9"
    lines = ok(run("list", "--json", "--system", "sys-b")).splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [5, 6]
    lines = ok(run("list", "--json", "--after", "2", "--limit", "2")).splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 4]
    assert ok(run("list", "--json", "--since", "2999-01-01")) == ""
    assert len(ok(run("list", "--json", "--status", "500", "--since", "2000-01-01T00:00:00+08:00")).splitlines()) == 2


@pytest.mark.parametrize(("args", "named"), [
    (["--since", "yesterday"], "--since"), (["--until", "2026-02-30"], "--until"), (["--kind", "both"], "--kind"),
    (["--system", "'; drop table x"], "--system"), (["--since", "2026-02-01", "--until", "2026-01-01"], "--until"),
])
def test_list_bad_filters(run: Run, args: list[str], named: str) -> None:
    assert named in one_line_error(run("list", *args))


def test_export(run: Run, adb: Database, tmp_path: Path) -> None:
    calls(adb, 5, system="sys-a")
    calls(adb, 3, system="sys-b")
    out = tmp_path / "audit.csv"
    result = run("export", "--format", "csv", "--out", out, "--system", "sys-b")
    ok(result)
    assert "exported 3 record(s)" in result.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["seq"] for r in rows] == ["6", "7", "8"] and rows[0]["system"] == "sys-b"
    out = tmp_path / "audit.jsonl"
    ok(run("export", "--out", out))
    assert [json.loads(line)["seq"] for line in out.read_text(encoding="utf-8").splitlines()] == list(range(1, 9))
    assert ok(run("export", "--format", "jsonl", "--out", "-", "--kind", "staff")) == ""
    assert "--format" in one_line_error(run("export", "--format", "xml", "--out", out))
    assert not list(tmp_path.glob(".*part"))


def test_checkpoint(run: Run, adb: Database) -> None:
    assert "the audit log is empty" in one_line_error(run("checkpoint"))
    calls(adb, 3)
    assert "checkpoint at seq 3" in ok(run("checkpoint"))
    assert "already checkpointed at seq 3" in ok(run("checkpoint"))
    assert "1 checkpoint signature(s) valid" in ok(run("verify"))


def test_prune(run: Run, adb: Database) -> None:
    calls(adb, 6, at=utcnow() - timedelta(days=200))
    calls(adb, 2)
    assert "run with --yes" in ok(run("prune"))
    assert "pruned 6 record(s) up to seq 6" in ok(run("prune", "--yes"))
    out = ok(run("verify"))
    assert "2 records (seq 7–8)" in out and "retention anchor at seq 6" in out
    assert "nothing to prune" in ok(run("prune", "--yes"))


def test_public_key(run: Run, tmp_path: Path) -> None:
    pem = ok(run("public-key"))
    key = PublicKey.from_pem(pem)
    ok(run("public-key", "--out", tmp_path / "k.pem"))
    assert PublicKey.from_pem((tmp_path / "k.pem").read_text()) == key
    assert json.loads(ok(run("public-key", "--json")))["key_id"] == key.key_id


@pytest.mark.parametrize("days", [0, 30, 179, -1])
def test_retention_below_180_days_is_refused(days: int) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(audit_retention_days=days)
    assert info.value.message.startswith("setting ONCEONLY_AUDIT_RETENTION_DAYS: ")
    assert "at least 180 days" in info.value.message and "\n" not in info.value.message


def test_retention_and_checkpoint_settings() -> None:
    assert load_settings().audit_retention_days == 180
    assert load_settings().audit_checkpoint_every == 1000
    assert load_settings(audit_retention_days=3650).audit_retention_days == 3650
    with pytest.raises(ConfigError, match="AUDIT_CHECKPOINT_EVERY"):
        load_settings(audit_checkpoint_every=0)


def test_retention_error_from_the_real_command(tmp_path: Path) -> None:
    env = {"ONCEONLY_HOME": str(tmp_path), "ONCEONLY_AUDIT_RETENTION_DAYS": "90", "PATH": "/usr/bin:/bin"}
    code = "from onceonly.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "audit", "prune"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: setting ONCEONLY_AUDIT_RETENTION_DAYS")
    assert "\n" not in result.stderr.strip()
    helped = subprocess.run([sys.executable, "-c", code, "audit", "--help"], env={**env, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    for command in ("verify", "list", "export", "checkpoint", "prune", "public-key"):
        assert command in helped.stdout
