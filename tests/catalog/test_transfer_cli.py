"""`onceonly catalog import|export|template` as an operator runs them: real subprocesses on a
fresh ONCEONLY_HOME, exit codes, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from onceonly.kit.identifiers import make_uscc

ORG = make_uscc("1", "1", "341800", "00300412")


def run(home: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env.update(ONCEONLY_HOME=str(home), COLUMNS="200")
    return subprocess.run([sys.executable, "-c", "from onceonly.cli import main; main()", *args],
                          env=env, cwd=cwd or home, capture_output=True, text=True, timeout=120)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    text = result.stderr.strip()
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    return text


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-home")
    ok(run(path, "init"))
    ok(run(path, "org", "add", ORG, "示例市公安局", "--region", "341800"))
    return path


def package(name: str, **meta: Any) -> dict[str, Any]:
    return {"name": "pkg", "resources": [{
        "name": name, "title": "人口基本信息", "description": "常住人口",
        "schema": {"primaryKey": ["citizen_id"], "fields": [
            {"name": "citizen_id", "title": "公民身份号码", "type": "string", "constraints": {"maxLength": 18},
             "onceonly": {"check": "citizen_id", "sensitivity": "sensitive"}},
            {"name": "name", "title": "姓名", "type": "string", "constraints": {"required": True}},
        ]},
        "onceonly": {"provider": ORG, "catalog": "301", "share_type": "unconditional", **meta},
    }]}


def write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2), "utf-8")
    return path


def test_import_export_and_template(home: Path, tmp_path: Path) -> None:
    src = write(tmp_path / "datapackage.json", package("person_cli"))
    assert "imported 1 resources" in ok(run(home, "catalog", "import", str(src)))
    assert "imported 1 resources" in ok(run(home, "catalog", "import", str(src)))  # again: unchanged
    out = tmp_path / "export"
    assert "datapackage.json" in ok(run(home, "catalog", "export", "--out", str(out)))
    exported = json.loads((out / "datapackage.json").read_text("utf-8"))
    [res] = [r for r in exported["resources"] if r["name"] == "person_cli"]
    assert res["onceonly"]["status"] == "draft" and res["onceonly"]["code"] == "301001/000001"
    assert res["schema"]["fields"][0]["onceonly"] == {"sensitivity": "sensitive", "check": "citizen_id"}
    ok(run(home, "catalog", "export"))  # default: the current directory
    assert (home / "datapackage.json").is_file()

    blank, filled = tmp_path / "blank.xlsx", tmp_path / "filled.xlsx"
    ok(run(home, "catalog", "template", str(blank)))
    assert load_workbook(blank).sheetnames == ["说明", "1-资源", "1-信息项", "选项"]
    ok(run(home, "catalog", "template", str(filled), "--resource", "person_cli"))
    assert load_workbook(filled)["1-资源"]["B2"].value == "person_cli"
    assert "imported 1 resources" in ok(run(home, "catalog", "import", str(filled)))


def test_import_with_publish(home: Path, tmp_path: Path) -> None:
    src = write(tmp_path / "dp.json", package("vehicle_cli"))
    ok(run(home, "catalog", "import", str(src), "--publish"))
    shown = json.loads(ok(run(home, "resource", "show", "vehicle_cli")))
    assert shown["status"] == "published" and shown["table_name"]
    doc = package("vehicle_cli")
    doc["resources"][0]["schema"]["fields"].append({"name": "note", "title": "备注"})
    ok(run(home, "catalog", "import", str(write(src, doc))))
    shown = json.loads(ok(run(home, "resource", "show", "vehicle_cli")))
    assert shown["version"] == 1 and [f["name"] for f in shown["fields"]][-1] == "note"


def test_errors_are_one_line_and_write_nothing(home: Path, tmp_path: Path) -> None:
    bad_json = tmp_path / "broken.json"
    bad_json.write_text('{"resources": [\n  {"name": "x" "title": "y"}\n]}', "utf-8")
    text = one_line_error(run(home, "catalog", "import", str(bad_json)))
    assert "broken.json is not valid JSON" in text and "line 2 column 16" in text

    doc = package("broken_cli")
    doc["resources"][0]["schema"]["fields"][1]["type"] = "strng"
    doc["resources"][0]["onceonly"]["provider"] = make_uscc("1", "1", "341800", "99999999")
    text = one_line_error(run(home, "catalog", "import", str(write(tmp_path / "bad.json", doc))))
    assert "resources[0].schema.fields[1].type: unknown type 'strng'" in text and "(and 1 more problems)" in text
    assert "broken_cli" not in ok(run(home, "resource", "list"))

    junk = tmp_path / "junk.xlsx"
    junk.write_bytes("名称,代码\n示例,1\n".encode("gb18030"))
    text = one_line_error(run(home, "catalog", "import", str(junk)))
    assert "junk.xlsx is not an Excel .xlsx workbook" in text

    text = one_line_error(run(home, "catalog", "import", str(tmp_path / "missing.json")))
    assert "missing.json" in text
    text = one_line_error(run(home, "catalog", "template", str(tmp_path / "t.xlsx"), "--resource", "no_such"))
    assert "resource no_such not found" in text
    assert not (tmp_path / "t.xlsx").exists()


def test_help_lists_the_transfer_commands(home: Path) -> None:
    text = ok(run(home, "catalog", "--help"))
    for command in ("import", "export", "template"):
        assert command in text
