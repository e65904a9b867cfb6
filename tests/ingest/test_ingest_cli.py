"""`onceonly ingest|batches|rejections` as an operator runs them, against the test database of
each backend: the --json report, every option, quarantine download and resubmission, one-line
errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from ingest_factories import (
    PERSON_HEADER,
    World,
    cid,
    person_row,
    person_rows,
    rejections_of,
    rows_by_key,
    snapshot,
    stored,
    write_csv,
    write_xlsx,
)
from typer.testing import CliRunner, Result

from core_factories import CLI, spec
from onceonly.catalog.service import create_resource
from onceonly.db import Database
from onceonly.ingest.cli import register
from onceonly.settings import get_settings

REPORT_COUNTS = ("read", "inserted", "updated", "unchanged", "deleted", "rejected")


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """Test app holding the ingest commands."""

    register(app)
    return app


@pytest.fixture
def run(app: typer.Typer, db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """run(*args) → Result of the command on this backend's database (as ONCEONLY_* settings)."""
    monkeypatch.setenv("ONCEONLY_HOME", str(db.settings.home))
    monkeypatch.setenv("ONCEONLY_DATABASE_URL", db.url)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: Any) -> Result:
        return runner.invoke(app, [str(a) for a in args])

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


def test_help_lists_every_option(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    for option in ("--resource", "--sheet", "--encoding", "--format", "--mapping", "--mode", "--force", "--resubmit",
                   "--json"):
        assert option in result.stdout, option
    for command in ("batches", "rejections"):
        assert CliRunner().invoke(app, [command, "--help"]).exit_code == 0


def test_json_report_is_one_object(run: Any, w: World, tmp_path: Path) -> None:
    rows = [*person_rows(3), person_row(3, 手机号码="12"), person_row(4, 性别="男")]
    path = write_csv(tmp_path / "p.csv", [*PERSON_HEADER, "备注"], [[*r, ""] for r in rows])
    out = ok(run("ingest", path, "--resource", w.ref, "--json"))
    report = json.loads(out)  # the whole stdout is one JSON object
    assert isinstance(report, dict)
    assert {k: report[k] for k in REPORT_COUNTS} == {"read": 5, "inserted": 3, "updated": 0, "unchanged": 0,
                                                     "deleted": 0, "rejected": 2}
    assert all(type(report[k]) is int for k in REPORT_COUNTS)
    assert report["status"] == "committed" and report["unmapped"] == ["备注"]
    assert [(r["row"], r["field"], r["rule"]) for r in report["rejections"]] == [
        (5, "mobile", "mobile.format"), (6, "sex", "code_list.unknown")]
    assert all(r["message"] for r in report["rejections"])
    again = json.loads(ok(run("ingest", path, "--resource", w.res.name, "--json")))
    assert (again["unchanged"], again["inserted"]) == (3, 0)


def test_human_report(run: Any, w: World, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [*PERSON_HEADER, "备注"], [[*r, ""] for r in
                                                                   [*person_rows(2), person_row(2, 手机号码="1")]])
    out = " ".join(ok(run("ingest", path, "--resource", w.ref)).split())  # Rich wraps at 80 columns
    assert "committed: read 3, inserted 2, updated 0, unchanged 0, deleted 0, rejected 1" in out
    assert "unmapped columns: 备注" in out and "mobile.format: 1" in out
    assert "onceonly rejections" in out and "--out" in out
    listed = [json.loads(line) for line in ok(run("batches", "--resource", w.ref, "--json")).splitlines()]
    assert [b["inserted"] for b in listed] == [2] and listed[0]["resource"] == w.ref
    table = ok(run("batches", "--resource", w.ref))  # a Rich table, squeezed to 80 columns here
    assert table.count("\n") >= 5


def test_sheet_encoding_and_mapping_options(run: Any, w: World, tmp_path: Path) -> None:
    book = write_xlsx(tmp_path / "b.xlsx", ["说明"], [["见第二页"]], title="说明",
                      setup=lambda ws: _second_sheet(ws, person_rows(3)))
    report = json.loads(ok(run("ingest", book, "--resource", w.ref, "--sheet", "人口", "--json")))
    assert (report["sheet"], report["inserted"]) == ("人口", 3)
    err = one_line_error(run("ingest", book, "--resource", w.ref, "--sheet", "nope"))
    assert "人口" in err and "说明" in err

    gbk = write_csv(tmp_path / "g.csv", PERSON_HEADER, [person_row(3, 姓名="王䶮")], encoding="gb18030")
    report = json.loads(ok(run("ingest", gbk, "--resource", w.ref, "--encoding", "gbk", "--json")))
    assert (report["encoding"], report["inserted"]) == ("gb18030", 1)
    assert stored(w.db, w.res.id, cid(3))["name"] == "王䶮"  # type: ignore[index]
    one_line_error(run("ingest", gbk, "--resource", w.ref, "--encoding", "klingon"))

    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"SFZH": "citizen_id", "XM": "name", "XB": "sex", "BZ": None}), "utf-8")
    mapped = write_csv(tmp_path / "m.csv", ["SFZH", "XM", "XB", "BZ"], [[cid(4), "人4", "1", "x"]])
    report = json.loads(ok(run("ingest", mapped, "--resource", w.ref, "--mapping", mapping, "--json")))
    assert (report["inserted"], report["unmapped"]) == (1, [])
    mapping.write_text("[1, 2]", "utf-8")
    assert "映射文件" in one_line_error(run("ingest", mapped, "--resource", w.ref, "--mapping", mapping))
    one_line_error(run("ingest", mapped, "--resource", w.ref, "--mapping", tmp_path / "missing.json"))


def test_format_option(run: Any, w: World, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "people.dat", PERSON_HEADER, person_rows(2), delimiter="\t")
    assert "--format" in one_line_error(run("ingest", path, "--resource", w.ref))
    report = json.loads(ok(run("ingest", path, "--resource", w.ref, "--format", "tsv", "--json")))
    assert (report["format"], report["inserted"]) == ("tsv", 2)
    assert "klingon" in one_line_error(run("ingest", path, "--resource", w.ref, "--format", "klingon"))


def _second_sheet(ws: Any, rows: list[list[Any]]) -> None:
    sheet = ws.parent.create_sheet("人口")
    sheet.append(PERSON_HEADER)
    for row in rows:
        sheet.append(row)


def test_replace_mode_refusal_and_force(run: Any, w: World, tmp_path: Path) -> None:
    ok(run("ingest", write_csv(tmp_path / "a.csv", PERSON_HEADER, person_rows(10)), "--resource", w.ref))
    before = snapshot(w.db, w.res.id)
    few = write_csv(tmp_path / "few.csv", PERSON_HEADER, person_rows(3))
    err = one_line_error(run("ingest", few, "--resource", w.ref, "--mode", "replace", "--json"))
    assert "--force" in err and "mode" in err
    assert snapshot(w.db, w.res.id) == before
    report = json.loads(ok(run("ingest", few, "--resource", w.ref, "--mode", "replace", "--force", "--json")))
    assert (report["mode"], report["deleted"], report["unchanged"]) == ("replace", 7, 3)
    assert set(rows_by_key(w.db, w.res.id)) == {cid(i) for i in range(3)}
    bad = run("ingest", few, "--resource", w.ref, "--mode", "merge")
    assert bad.exit_code == 2 and "upsert or replace" in bad.stderr


def test_rejections_download_correct_and_resubmit(run: Any, w: World, tmp_path: Path) -> None:
    rows = [person_row(0), person_row(1, 手机号码="12"), person_row(2), person_row(3, 性别="5"),
            person_row(4, 公民身份号码=cid(4)[:-1] + "Z")]
    first = json.loads(ok(run("ingest", write_csv(tmp_path / "a.csv", PERSON_HEADER, rows), "--resource", w.ref,
                              "--json")))
    assert first["rejected"] == 3
    out = tmp_path / "rejected.csv"
    assert "wrote" in ok(run("rejections", first["id"], "--out", out))
    assert out.read_bytes().startswith("\ufeff".encode())
    table = list(csv.reader(io.StringIO(out.read_text("utf-8-sig"))))
    assert table[0] == ["_row", "_problems", *PERSON_HEADER] and [r[0] for r in table[1:]] == ["3", "5", "6"]
    assert "citizen_id.format" in table[3][1]
    printed = ok(run("rejections", first["id"]))  # to stdout
    assert list(csv.reader(io.StringIO(printed.removeprefix("\ufeff")))) == table
    table[1][table[0].index("手机号码")] = "13900000001"
    table[2][table[0].index("性别")] = "2"
    table[3][table[0].index("公民身份号码")] = cid(4)
    with out.open("w", encoding="utf-8-sig", newline="") as fh:
        csv.writer(fh).writerows(table)
    again = json.loads(ok(run("ingest", out, "--resource", w.ref, "--resubmit", first["id"], "--json")))
    assert (again["inserted"], again["rejected"], again["resubmit_of"], again["unmapped"]) == (3, 0, first["id"], [])
    assert {r.row_number: r.resolved_by for r in rejections_of(w.db, first["id"])} == {
        3: again["id"], 5: again["id"], 6: again["id"]}
    assert set(rows_by_key(w.db, w.res.id)) == {cid(i) for i in range(5)}
    empty = ok(run("rejections", again["id"]))
    assert empty.removeprefix("\ufeff").strip() == "_row,_problems"


def test_one_line_errors(run: Any, db: Database, w: World, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "p.csv", PERSON_HEADER, person_rows(2))
    assert "not found" in one_line_error(run("ingest", good, "--resource", "no_such_resource"))
    assert "no such file" in one_line_error(run("ingest", tmp_path / "missing.csv", "--resource", w.ref))
    no_name = write_csv(tmp_path / "n.csv", PERSON_HEADER[:1], [[cid(0)]])
    err = one_line_error(run("ingest", no_name, "--resource", w.ref, "--json"))
    assert "姓名" in err and "name" in err
    binary = tmp_path / "b.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    assert "不是文本文件" in one_line_error(run("ingest", binary, "--resource", w.ref))
    assert "not found" in one_line_error(run("rejections", 99999999))
    with db.session(write=True) as s:
        draft = create_resource(s, CLI, spec(w.org))
    assert "published" in one_line_error(run("ingest", good, "--resource", draft.code))
    assert snapshot(db, w.res.id).rows == 0
    assert "not found" in one_line_error(run("batches", "--resource", "no_such_resource"))
