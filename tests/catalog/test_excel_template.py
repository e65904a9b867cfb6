"""The stewards' Excel template: blank and filled workbooks, round trip, labels or codes, and
problems named by sheet, row and column with nothing written."""

from __future__ import annotations

import io
import itertools
import secrets
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from onceonly.accounts import service as accounts
from onceonly.accounts.actor import Actor
from onceonly.catalog import orgs, service
from onceonly.catalog import repository as repo
from onceonly.catalog.excel_template import import_template, import_workbook, read_template, write_template
from onceonly.catalog.models import Organization, Resource
from onceonly.catalog.schemas import OrgIn, ResourceSpec
from onceonly.db import Database
from onceonly.errors import ValidationFailed
from onceonly.kit.identifiers import make_uscc
from onceonly.ops.setup import initialize

CLI = Actor.cli()
_n = itertools.count(secrets.randbelow(10**5) * 100)


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_n)}"


def new_org(s: Any) -> Organization:
    code = make_uscc("1", "1", "341800", f"{next(_n) % 10**8:08d}")
    return orgs.add_org(s, CLI, OrgIn(code=code, name=unique("部门")))


def rich_spec(org: Organization, name: str, **overrides: Any) -> ResourceSpec:
    data: dict[str, Any] = {
        "name": name, "title": "企业登记信息", "provider": org.code, "catalog": f"3{org.number:02d}",
        "summary": "企业登记的基本信息", "share_type": "conditional", "share_condition": "用于审批",
        "share_modes": ["verify", "api"], "open_type": "conditional", "open_condition": "申请后开放",
        "update_cycle": "weekly", "related": ["102001/000001", "102001/000002"],
        "key_fields": ["uscc"], "query_fields": ["name", "kind"],
        "fields": [
            {"name": "uscc", "title": "统一社会信用代码", "length": 18, "check": "uscc", "unique": True,
             "sensitivity": "public"},
            {"name": "name", "title": "名称", "length": 200, "required": True, "description": "登记名称"},
            {"name": "kind", "title": "类型", "length": 2, "enum": ["01", "02", "10"]},
            {"name": "capital", "title": "注册资本", "type": "number", "minimum": 0, "maximum": 1e12},
            {"name": "staff", "title": "人数", "type": "integer", "minimum": 1, "length": 6},
            {"name": "founded", "title": "成立日期", "type": "date"},
            {"name": "active", "title": "存续", "type": "boolean"},
            {"name": "region", "title": "住所地", "code_list": "GB/T 2260", "pattern": "[0-9]{6}",
             "sensitivity": "internal"},
            {"name": "checked_at", "title": "核查时间", "type": "datetime", "sensitivity": "personal"},
            {"name": "legal_id", "title": "法定代表人身份证", "check": "citizen_id", "sensitivity": "sensitive"},
        ],
    }
    data.update(overrides)
    return ResourceSpec.model_validate(data)


def count_resources(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Resource)) or 0


def filled(db: Database, tmp_path: Path, *overrides: dict[str, Any]) -> tuple[Path, list[Resource]]:
    """A template written from new resources (one per overrides dict)."""
    with db.session(write=True) as s:  # the app of the HTTP test may write meanwhile (SQLite)
        org = new_org(s)
        made = [service.create_resource(s, CLI, rich_spec(org, unique("ent"), **o)) for o in overrides or ({},)]
        path = tmp_path / "filled.xlsx"
        write_template(s, path, made)
    return path, made


# -- writing ---------------------------------------------------------------------------------

def test_blank_template_has_the_sheets_and_helps(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "blank.xlsx"
    with db.session() as s:
        write_template(s, path, [])
    wb = load_workbook(path)
    assert wb.sheetnames == ["说明", "1-资源", "1-信息项", "选项"]
    assert wb["选项"].sheet_state == "hidden"
    res, fields = wb["1-资源"], wb["1-信息项"]
    assert [c.value for c in res[1]] == ["项目", "内容", "填写说明"]
    labels = [res.cell(row=r, column=1).value for r in range(2, res.max_row + 1)]
    assert labels[:5] == ["资源名称", "中文名称", "提供方代码", "目录", "分类"]
    assert {"摘要", "格式", "共享类型", "共享条件", "共享方式", "开放类型", "开放条件", "更新周期", "关联资源", "主键",
            "查询字段"} <= set(labels)
    assert all(res.cell(row=r, column=2).value is None for r in range(2, res.max_row + 1))
    assert all(res.cell(row=r, column=3).value for r in range(2, res.max_row + 1))  # a hint on every item
    headers = [c.value for c in fields[1]]
    assert headers == ["字段名", "中文名称", "类型", "长度", "必填", "唯一", "敏感级别", "校验", "代码集", "枚举值",
                       "最小值", "最大值", "正则", "说明"]
    assert all(c.font.b for c in fields[1]) and all(c.comment is not None for c in fields[1])
    assert fields.freeze_panes == "A2" and res.freeze_panes == "A2"
    assert fields.column_dimensions["A"].width > 10
    validations = {str(dv.sqref).split(":")[0]: dv.formula1 for dv in fields.data_validations.dataValidation}
    assert set(validations) == {"C2", "E2", "F2", "G2", "H2", "I2"}  # type, required, unique, sensitivity, check, codes
    assert len(res.data_validations.dataValidation) == 3  # share type, open type, update cycle
    choices = [c.value for c in wb["选项"]["A"]][1:]
    assert choices == ["字符型", "整数型", "数值型", "布尔型", "日期型", "日期时间型"]
    assert "GB/T 2261.1" in [c.value for c in wb["选项"]["E"]]
    with db.session() as s, pytest.raises(ValidationFailed, match="describes no resource"):
        import_template(s, CLI, path)  # an unfilled template is not an empty success


def test_filled_template_holds_the_resource(db: Database, tmp_path: Path) -> None:
    path, [res] = filled(db, tmp_path)
    wb = load_workbook(path)
    sheet = wb["1-资源"]
    values = {sheet.cell(row=r, column=1).value: sheet.cell(row=r, column=2).value for r in range(2, sheet.max_row + 1)}
    assert values["资源名称"] == res.name and values["共享类型"] == "有条件共享"
    assert values["共享方式"] == "比对验证、接口访问" and values["更新周期"] == "每周"
    assert values["目录"] == res.code[:3] and values["分类"] == "001" and values["资源代码"] == res.code
    assert values["状态"] == "草稿"
    row = [c.value for c in wb["1-信息项"][2]]
    assert row[:8] == ["uscc", "统一社会信用代码", "字符型", 18, "是", "是", "公开（可向社会开放）",
                       "统一社会信用代码（GB 32100）"]
    assert wb["1-信息项"]["J4"].value == "01、02、10"


# -- round trip ------------------------------------------------------------------------------

def test_round_trip_into_a_fresh_database(db: Database, fresh_db: Database, tmp_path: Path) -> None:
    path, made = filled(db, tmp_path, {}, {"share_type": "none", "open_type": "open", "open_condition": None,
                                           "share_condition": None, "related": [], "query_fields": []},
                        {"share_type": "unconditional", "share_modes": [], "catalog": "102"})
    with db.session() as s:
        expected = {r.name: service.spec_of(repo.resource_by_id(s, r.id)) for r in made}  # type: ignore[arg-type]
        org_code, org_name = made[0].provider.code, made[0].provider.name
        fresh_orgs = [(o.code, o.name) for o in repo.list_orgs(s)]
    drafts, problems = read_template(path)
    assert problems == []
    assert {d.data["name"]: ResourceSpec.model_validate(d.data) for d in drafts} == expected
    with fresh_db.session() as s:
        for code, name in fresh_orgs:
            orgs.add_org(s, CLI, OrgIn(code=code, name=name))
    with fresh_db.session() as s:
        imported = import_template(s, CLI, path)
        assert [r.name for r in imported] == [r.name for r in made]
        assert {r.name: service.spec_of(r) for r in imported} == expected
        assert imported[0].provider.code == org_code and imported[0].provider.name == org_name


def test_reimport_of_a_filled_template_changes_nothing(db: Database, tmp_path: Path) -> None:
    path, [res] = filled(db, tmp_path)
    with db.session() as s:
        service.publish_resource(s, CLI, repo.resource_by_id(s, res.id))  # type: ignore[arg-type]
    with db.session() as s:
        write_template(s, path, [repo.resource_by_id(s, res.id)])  # type: ignore[list-item]
    before = count_resources(db)
    with db.session() as s:
        assert [(i.resource.id, i.action) for i in import_workbook(s, CLI, path)] == [(res.id, "unchanged")]
    assert count_resources(db) == before


def test_steward_edits_are_imported(db: Database, tmp_path: Path) -> None:
    """Add a nullable field to a published resource in Excel: the same version is updated."""
    path, [res] = filled(db, tmp_path)
    with db.session() as s:
        service.publish_resource(s, CLI, repo.resource_by_id(s, res.id))  # type: ignore[arg-type]
    wb = load_workbook(path)
    ws = wb["1-信息项"]
    ws.append(["remark", "备注", "字符型", 500, "否", "否", "内部", None, None, None, None, None, None, "新增"])
    wb["1-资源"]["B3"] = "企业登记信息（更新）"
    wb.save(path)
    with db.session() as s:
        [done] = import_workbook(s, CLI, path)
        assert done.action == "updated" and done.resource.id == res.id and done.resource.status == "published"
        assert done.resource.title == "企业登记信息（更新）"
        assert [f.name for f in done.resource.fields][-1] == "remark"


def _workbook(resource_rows: list[tuple[str, Any]], field_rows: list[list[Any]],
              headers: list[str] | None = None) -> bytes:
    """A template as a steward might type it, without our styling."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "1-资源"
    ws.append(["项目", "内容"])
    for item in resource_rows:
        ws.append(list(item))
    fs = wb.create_sheet("1-信息项")
    fs.append(headers or ["字段名", "中文名称", "类型", "长度", "必填", "唯一", "敏感级别", "校验", "代码集", "枚举值",
                          "最小值", "最大值", "正则", "说明"])
    for row in field_rows:
        fs.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def test_english_codes_and_chinese_labels_are_both_accepted(db: Database) -> None:
    with db.session() as s:
        org = new_org(s)
    name = unique("typed")
    data = _workbook(
        [("资源名称", name), ("中文名称", "手填资源"), ("提供方代码", org.code.lower()), ("目录", 300 + org.number),
         ("分类", 1), ("共享类型", "unconditional"), ("共享方式", "verify, 检索查询"), ("开放类型", "无条件开放"),
         ("更新周期", "Monthly"), ("主键", "id"), ("查询字段", "id，title")],
        [["id", "编号", "string", "20", "yes", True, "公开", "uscc", None, None, None, None, None, None],
         [],
         ["title", "名称", "字符型", 100.0, "否", "N", "sensitive", None, None, "甲、乙;丙", None, None, None, "说明"],
         ["n", "数量", "整数型", None, None, None, "内部（政务内部共享）", None, None, None, "0", 9.5, None, None]],
        headers=["字段名", "中文名称", "类型", "长度", "必填", "唯一", "敏感级别", "校验", "代码集", "枚举值",
                 "最小值", "最大值", "正则", "说明"],
    )
    with db.session() as s:
        [done] = import_workbook(s, CLI, io.BytesIO(data))
        spec = service.spec_of(done.resource)
    assert spec.provider == org.code and spec.catalog == f"3{org.number:02d}" and spec.category == "001"
    assert spec.share_type == "unconditional" and spec.share_modes == ["verify", "query"]
    assert spec.open_type == "open" and spec.update_cycle == "monthly" and spec.query_fields == ["id", "title"]
    by = {f.name: f for f in spec.fields}
    assert by["id"].length == 20 and by["id"].required and by["id"].unique and by["id"].check == "uscc"
    assert by["id"].sensitivity == "public" and by["title"].sensitivity == "sensitive"
    assert by["title"].enum == ["甲", "乙", "丙"] and not by["title"].unique and by["title"].description == "说明"
    assert by["n"].type == "integer" and (by["n"].minimum, by["n"].maximum) == (0, 9.5)


# -- problems by sheet, row and column --------------------------------------------------------

def test_bad_values_name_sheet_row_and_column(db: Database) -> None:
    with db.session() as s:
        org = new_org(s)
    data = _workbook(
        [("资源名称", unique("bad")), ("中文名称", "坏"), ("提供方代码", org.code), ("目录", f"3{org.number:02d}"),
         ("共享类型", "随便"), ("主键", "id"), ("颜色", "红")],
        [["id", "编号", "string"], ["a", "甲", "string"], ["b", "乙", "string"],
         ["c", "丙", "strng", "x", "也许", None, "绝密", None, "no list"]],
    )
    before = count_resources(db)
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_workbook(s, CLI, io.BytesIO(data))
    problems = {e["path"]: e["message"] for e in info.value.errors}
    assert problems["sheet 1-信息项 row 5 column 类型"].startswith("unknown type 'strng'")
    assert problems["sheet 1-信息项 row 5 column 长度"] == "'x' is not a whole number"
    assert problems["sheet 1-信息项 row 5 column 必填"] == "'也许' is not 是 or 否"
    assert problems["sheet 1-信息项 row 5 column 敏感级别"].startswith("unknown 敏感级别 '绝密'")
    assert problems["sheet 1-资源 row 6 column B (共享类型)"].startswith(
        "unknown 共享类型 '随便'; use one of 无条件共享")
    assert problems["sheet 1-资源 row 8 column A"] == "unknown item '颜色'"
    assert info.value.message.startswith("sheet ")
    assert count_resources(db) == before


def test_database_problems_name_their_cells(db: Database) -> None:
    data = _workbook(
        [("资源名称", unique("refs")), ("中文名称", "引用"), ("提供方代码", make_uscc("1", "1", "341800", "99999998")),
         ("目录", "399"), ("主键", "id, nope"), ("共享类型", "有条件共享")],
        [["id", "编号", "string", None, None, None, None, None, "no such list"], ["id", "重复"]],
    )
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_workbook(s, CLI, io.BytesIO(data))
    paths = [e["path"] for e in info.value.errors]
    assert paths == ["sheet 1-信息项 row 3 column 字段名", "sheet 1-资源 row 6 column B (主键)",
                     "sheet 1-资源 (共享条件)"]
    assert [e["message"] for e in info.value.errors] == [
        "duplicate field name 'id' (also field 1)", "names field 'nope', which is not among the fields",
        "is required when share_type is conditional"]
    # fix the shape: now the references are checked, each at its cell
    data = _workbook(
        [("资源名称", unique("refs")), ("中文名称", "引用"), ("提供方代码", make_uscc("1", "1", "341800", "99999998")),
         ("目录", "399"), ("主键", "id"), ("共享类型", "不予共享")],
        [["id", "编号", "string", None, None, None, None, None, "no such list"]],
    )
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_workbook(s, CLI, io.BytesIO(data))
    problems = {e["path"]: e["message"] for e in info.value.errors}
    assert set(problems) == {"sheet 1-资源 row 4 column B (提供方代码)", "sheet 1-资源 row 5 column B (目录)",
                             "sheet 1-信息项 row 2 column 代码集"}


def test_sheet_structure_problems(db: Database, tmp_path: Path) -> None:
    path, _ = filled(db, tmp_path)
    wb = load_workbook(path)
    wb.copy_worksheet(wb["1-资源"]).title = "1-资源 (2)"
    wb.create_sheet("2-资源")
    wb["1-信息项"]["O1"] = "备注"
    wb.save(path)
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_template(s, CLI, path)
    problems = {e["path"]: e["message"] for e in info.value.errors}
    assert "is not a template sheet" in problems["sheet 1-资源 (2)"]
    assert problems["sheet 2-资源"] == "has no partner sheet 2-信息项"
    assert problems["sheet 1-信息项 row 1 column 备注"] == "unknown column '备注'"


@pytest.mark.parametrize(("content", "message"), [
    (b"\x00\x01\x02 not a workbook at all \xff\xfe", "is not an Excel .xlsx workbook: it is not an Office Open XML"),
    ("统一社会信用代码,名称\n11341800MA2N0Y1T4K,示例公司\n".encode("gb18030"), "it looks like a text file (a CSV?)"),
    (b"", "is not an Excel .xlsx workbook"),
])
def test_not_an_xlsx_file(db: Database, tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "upload.xlsx"
    path.write_bytes(content)
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_template(s, CLI, path)
    assert info.value.message.startswith("upload.xlsx ") and message in info.value.message
    assert "\n" not in info.value.message


def test_a_zip_that_is_not_a_workbook(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    with db.session() as s, pytest.raises(ValidationFailed, match=r"archive\.xlsx is not a readable \.xlsx workbook"):
        import_template(s, CLI, path)


# -- HTTP ------------------------------------------------------------------------------------

@pytest.fixture
def client(db: Database) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from onceonly.app import create_app
    from onceonly.catalog.transfer_endpoints import router

    app = create_app(db.settings, db)
    if not any(getattr(r, "path", "") == "/api/v1/catalog/template" for r in app.routes):
        app.include_router(router, prefix="/api/v1")
    with db.session() as s:
        user, _ = accounts.create_user(s, CLI, unique("admin"), "platform_admin", None)
        _, token = accounts.create_api_token(s, CLI, user, "t")
    with TestClient(app) as c:
        yield c, {"Authorization": f"Bearer {token}"}


XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def test_http_template_download_and_upload(db: Database, tmp_path: Path,
                                           client: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = client
    blank = c.get("/api/v1/catalog/template.xlsx", headers=auth)
    assert blank.status_code == 200 and blank.headers["content-type"] == XLSX
    assert "catalog-template.xlsx" in blank.headers["content-disposition"]
    assert load_workbook(io.BytesIO(blank.content)).sheetnames == ["说明", "1-资源", "1-信息项", "选项"]
    _, [res] = filled(db, tmp_path)
    one = c.get("/api/v1/catalog/template.xlsx", params={"resource": res.name}, headers=auth)
    assert one.status_code == 200
    assert load_workbook(io.BytesIO(one.content))["1-资源"]["B2"].value == res.name
    assert c.get("/api/v1/catalog/template.xlsx", params={"resource": "no_such"}, headers=auth).status_code == 404
    done = c.post("/api/v1/catalog/template", files={"file": ("t.xlsx", one.content, XLSX)}, headers=auth)
    assert done.status_code == 200, done.text
    assert done.json() == [{"name": res.name, "code": res.code, "version": 1, "status": "draft",
                            "action": "unchanged"}]
    junk = c.post("/api/v1/catalog/template", files={"file": ("t.xlsx", "名称\n".encode("gb18030"), XLSX)},
                  headers=auth)
    assert junk.status_code == 422 and "not an Excel .xlsx workbook" in junk.json()["detail"]
