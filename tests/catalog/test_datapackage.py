"""Catalog ⇄ Frictionless Data Package: export shape, round trip, constraints, all-or-nothing
import naming the JSON path of every problem, and what re-importing does to each resource state."""

from __future__ import annotations

import copy
import itertools
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from onceonly.accounts import service as accounts
from onceonly.accounts.actor import Actor
from onceonly.accounts.models import StaffAction
from onceonly.catalog import orgs, service
from onceonly.catalog import repository as repo
from onceonly.catalog.datapackage import (
    build_descriptor,
    export_datapackage,
    exportable,
    import_datapackage,
    import_descriptor,
    read_descriptor,
)
from onceonly.catalog.models import Organization, Resource
from onceonly.catalog.schemas import OrgIn, ResourceSpec
from onceonly.db import Database
from onceonly.errors import PermissionDenied, ValidationFailed
from onceonly.kit.identifiers import make_uscc
from onceonly.ops.setup import initialize

CLI = Actor.cli()
_n = itertools.count(secrets.randbelow(10**5) * 100)


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)


def unique(prefix: str) -> str:
    return f"{prefix}_{next(_n)}"


def new_org(s: Any, name: str | None = None) -> Organization:
    code = make_uscc("1", "1", "341800", f"{next(_n) % 10**8:08d}")
    return orgs.add_org(s, CLI, OrgIn(code=code, name=name or unique("部门"), region="341800"))


def rich_spec(org: Organization, name: str, **overrides: Any) -> ResourceSpec:
    """A resource using every attribute the catalog knows."""
    data: dict[str, Any] = {
        "name": name, "title": "人口基本信息", "provider": org.code, "catalog": f"3{org.number:02d}",
        "summary": "常住人口的基本信息", "format": "数据库", "share_type": "conditional",
        "share_condition": "用于政务服务办理", "share_modes": ["verify", "query"], "open_type": "conditional",
        "open_condition": "脱敏后开放", "update_cycle": "monthly", "related": ["101001/000001"],
        "key_fields": ["citizen_id"], "query_fields": ["name"],
        "fields": [
            {"name": "citizen_id", "title": "公民身份号码", "length": 18, "check": "citizen_id",
             "sensitivity": "sensitive", "pattern": "[0-9]{17}[0-9X]", "unique": True},
            {"name": "name", "title": "姓名", "length": 50, "required": True, "sensitivity": "personal",
             "description": "户籍登记的姓名"},
            {"name": "sex", "title": "性别", "length": 1, "code_list": "GB/T 2261.1", "enum": ["0", "1", "2", "9"]},
            {"name": "age", "title": "年龄", "type": "integer", "minimum": 0, "maximum": 150, "length": 3},
            {"name": "score", "title": "分值", "type": "number", "minimum": 0.5, "maximum": 99.5},
            {"name": "born", "title": "出生日期", "type": "date", "minimum": 1.0},
            {"name": "married", "title": "已婚", "type": "boolean", "pattern": "^(true|false)$"},
            {"name": "seen_at", "title": "采集时间", "type": "datetime", "sensitivity": "public"},
        ],
    }
    data.update(overrides)
    return ResourceSpec.model_validate(data)


def create(s: Any, org: Organization, name: str | None = None, **overrides: Any) -> Resource:
    return service.create_resource(s, CLI, rich_spec(org, name or unique("res"), **overrides))


def descriptor_of(s: Any, *names: str) -> dict[str, Any]:
    return build_descriptor(s, [repo.latest_resource_by_name(s, n) for n in names])  # type: ignore[misc]


def count_resources(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Resource)) or 0


def count_actions(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(StaffAction)) or 0


# -- export ----------------------------------------------------------------------------------

def test_export_writes_a_tabular_data_package(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        org = new_org(s)
        res = create(s, org)
        gone = service.publish_resource(s, CLI, create(s, org))
        service.retire_resource(s, CLI, gone)
        name, gone_name = res.name, gone.name
    with db.session() as s:
        path = export_datapackage(s, tmp_path / "out" / "nested")
    assert path == tmp_path / "out" / "nested" / "datapackage.json"
    package = json.loads(path.read_text("utf-8"))
    assert package["name"] == "onceonly-catalog" and package["profile"] == "tabular-data-package"
    by_name = {r["name"]: r for r in package["resources"]}
    assert gone_name not in by_name  # retired resources are not exported
    r = by_name[name]
    assert r["profile"] == "tabular-data-resource" and r["title"] == "人口基本信息"
    assert r["description"] == "常住人口的基本信息"
    fields = {f["name"]: f for f in r["schema"]["fields"]}
    assert r["data"] == [list(fields)]  # header row only: a self-contained, valid inline table
    assert r["schema"]["primaryKey"] == ["citizen_id"]
    assert fields["citizen_id"] == {
        "name": "citizen_id", "title": "公民身份号码", "type": "string",
        "constraints": {"required": True, "unique": True, "maxLength": 18, "pattern": "[0-9]{17}[0-9X]"},
        "onceonly": {"sensitivity": "sensitive", "check": "citizen_id"},
    }
    assert fields["sex"]["constraints"] == {"enum": ["0", "1", "2", "9"], "maxLength": 1}
    assert fields["sex"]["onceonly"]["code_list"] == "GB/T 2261.1"
    assert fields["name"]["description"] == "户籍登记的姓名"
    # integer bounds stay integers; rules Table Schema cannot attach to a type travel under onceonly
    assert fields["age"]["constraints"] == {"minimum": 0, "maximum": 150}
    assert fields["age"]["onceonly"] == {"sensitivity": "internal", "length": 3}
    assert fields["score"]["constraints"] == {"minimum": 0.5, "maximum": 99.5}
    assert fields["born"]["onceonly"] == {"sensitivity": "internal", "minimum": 1.0}
    assert fields["married"]["onceonly"]["pattern"] == "^(true|false)$"
    assert [f["type"] for f in fields.values()] == ["string", "string", "string", "integer", "number", "date",
                                                    "boolean", "datetime"]
    meta = r["onceonly"]
    assert meta["provider"] == org.code and meta["catalog"] == f"3{org.number:02d}" and meta["category"] == "001"
    assert meta["share_type"] == "conditional" and meta["share_modes"] == ["verify", "query"]
    assert meta["open_type"] == "conditional" and meta["open_condition"] == "脱敏后开放"
    assert meta["update_cycle"] == "monthly" and meta["summary"] == "常住人口的基本信息"
    assert meta["status"] == "draft" and meta["version"] == 1 and meta["code"] == res.code


def test_export_takes_the_newest_version(db: Database) -> None:
    with db.session() as s:
        org = new_org(s)
        v1 = service.publish_resource(s, CLI, create(s, org))
        service.new_version(s, CLI, v1, rich_spec(org, v1.name, title="第二版"))
        name = v1.name
    with db.session() as s:
        exported = [r for r in build_descriptor(s)["resources"] if r["name"] == name]
    assert len(exported) == 1
    assert exported[0]["title"] == "第二版" and exported[0]["onceonly"]["version"] == 2


# -- round trip ------------------------------------------------------------------------------

def test_round_trip_reproduces_the_catalog(db: Database, fresh_db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        org = new_org(s, "示例市公安局")
        cat = orgs.get_catalog(s, f"3{org.number:02d}")
        orgs.ensure_category(s, cat, "007", "户籍管理")
        create(s, org, category="007")
        service.publish_resource(s, CLI, create(s, org))
        create(s, org, share_type="none", share_condition=None, open_type="open", open_condition=None,
               catalog="101", related=[], query_fields=[])
        create(s, org, share_type="unconditional", share_modes=[], catalog="205")
    with db.session() as s:
        path = export_datapackage(s, tmp_path)
        expected = {r.name: service.spec_of(r) for r in exportable(s)}
        source_orgs = [(o.code, o.name) for o in repo.list_orgs(s)]
    with fresh_db.session() as s:  # the same departments, registered in the same order
        for code, name in source_orgs:
            orgs.add_org(s, CLI, OrgIn(code=code, name=name))
    with fresh_db.session() as s:
        imported = import_datapackage(s, CLI, path)
        assert {r.name for r in imported} == set(expected)
    with fresh_db.session() as s:
        got = {r.name: service.spec_of(r) for r in repo.all_resources(s)}
        codes = {r.name: r.code for r in repo.all_resources(s)}
    assert got == expected
    assert codes == {r["name"]: r["onceonly"]["code"] for r in json.loads(path.read_text("utf-8"))["resources"]}
    with fresh_db.session() as s:  # ... and exporting the copy gives the same package but for status/version
        again = build_descriptor(s)
    original = json.loads(path.read_text("utf-8"))
    for package in (again, original):
        for r in package["resources"]:
            for key in ("status", "version"):
                r["onceonly"].pop(key)
    assert sorted(again["resources"], key=lambda r: r["name"]) == sorted(original["resources"],
                                                                         key=lambda r: r["name"])


def test_reimport_of_the_same_package_changes_nothing(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        org = new_org(s)
        draft, pub = create(s, org), service.publish_resource(s, CLI, create(s, org))
        descriptor = descriptor_of(s, draft.name, pub.name)
        stamps = {draft.id: draft.updated_at, pub.id: pub.updated_at}
    before_resources, before_actions = count_resources(db), count_actions(db)
    with db.session() as s:
        done = import_descriptor(s, CLI, descriptor)
        assert [(i.resource.id, i.action) for i in done] == [(draft.id, "unchanged"), (pub.id, "unchanged")]
    assert (count_resources(db), count_actions(db)) == (before_resources, before_actions)
    with db.session() as s:
        assert {i: s.get(Resource, i).updated_at for i in stamps} == stamps  # type: ignore[union-attr]


# -- constraints -----------------------------------------------------------------------------

def test_each_constraint_is_honoured(db: Database) -> None:
    with db.session() as s:
        org = new_org(s)
    name = unique("cons")
    descriptor = {"resources": [{
        "name": name, "title": "约束", "profile": "tabular-data-resource", "data": [],
        "schema": {"primaryKey": "id", "fields": [
            {"name": "id", "type": "string", "title": "编号", "constraints": {"maxLength": 12, "unique": True}},
            {"name": "kind", "title": "类别", "constraints": {"enum": ["a", "b"], "required": True}},
            {"name": "level", "title": "级别", "type": "integer",
             "constraints": {"enum": [1, 2, 3], "minimum": 1, "maximum": 3}},
            {"name": "rate", "title": "比率", "type": "number", "constraints": {"minimum": 0, "maximum": 1.5}},
            {"name": "phone", "title": "电话", "constraints": {"pattern": "1[3-9][0-9]{9}"},
             "onceonly": {"check": "mobile", "sensitivity": "personal"}},
            {"name": "size", "title": "规模", "type": "integer", "onceonly": {"length": 4}},
        ]},
        "onceonly": {"provider": org.code, "catalog": f"3{org.number:02d}", "share_type": "unconditional"},
    }]}
    with db.session() as s:
        [done] = import_descriptor(s, CLI, descriptor)
        assert done.action == "created" and done.resource.status == "draft"
        got = {f.name: f for f in service.spec_of(done.resource).fields}
    assert got["id"].length == 12 and got["id"].unique and got["id"].required  # key fields are required
    assert got["kind"].enum == ["a", "b"] and got["kind"].required and got["kind"].type == "string"
    assert got["level"].enum == ["1", "2", "3"] and (got["level"].minimum, got["level"].maximum) == (1, 3)
    assert (got["rate"].minimum, got["rate"].maximum) == (0, 1.5)
    assert got["phone"].pattern == "1[3-9][0-9]{9}" and got["phone"].check == "mobile"
    assert got["phone"].sensitivity == "personal" and got["size"].length == 4
    assert not got["rate"].required and not got["rate"].unique


# -- problems named by JSON path --------------------------------------------------------------

def _base(org: Organization, name: str) -> dict[str, Any]:
    return {"name": "pkg", "resources": [{
        "name": name, "title": "基础", "description": "x",
        "schema": {"primaryKey": ["id"], "fields": [
            {"name": "id", "title": "编号", "type": "string", "constraints": {"maxLength": 20},
             "onceonly": {"sensitivity": "internal"}},
            {"name": "n", "title": "数量", "type": "integer"},
        ]},
        "onceonly": {"provider": org.code, "catalog": f"3{org.number:02d}", "share_type": "unconditional"},
    }]}


CASES: list[tuple[str, Any, str, str]] = [
    ("bad type", ("resources", 0, "schema", "fields", 1, "type", "strng"),
     "resources[0].schema.fields[1].type", "unknown type 'strng'"),
    ("unsupported type", ("resources", 0, "schema", "fields", 1, "type", "geopoint"),
     "resources[0].schema.fields[1].type", "not supported"),
    ("unknown provider", ("resources", 0, "onceonly", "provider", make_uscc("1", "1", "341800", "99999999")),
     "resources[0].onceonly.provider", "not found"),
    ("missing primaryKey field", ("resources", 0, "schema", "primaryKey", ["nope"]),
     "resources[0].schema.primaryKey[0]", "'nope'"),
    ("duplicate field names", ("resources", 0, "schema", "fields", 1, "name", "id"),
     "resources[0].schema.fields[1].name", "duplicate field name 'id'"),
    ("wrong sensitivity", ("resources", 0, "schema", "fields", 0, "onceonly", "sensitivity", "secret"),
     "resources[0].schema.fields[0].onceonly.sensitivity", "'secret'"),
    ("unknown code list", ("resources", 0, "schema", "fields", 0, "onceonly", "code_list", "GB/T 0000"),
     "resources[0].schema.fields[0].onceonly.code_list", "unknown code list 'GB/T 0000'"),
    ("maxLength zero", ("resources", 0, "schema", "fields", 0, "constraints", "maxLength", 0),
     "resources[0].schema.fields[0].constraints.maxLength", "greater than or equal to 1"),
    ("bad regex", ("resources", 0, "schema", "fields", 0, "constraints", "pattern", "([a-z"),
     "resources[0].schema.fields[0].constraints.pattern", "not a valid regular expression"),
    ("unsupported constraint", ("resources", 0, "schema", "fields", 0, "constraints", "minLength", 2),
     "resources[0].schema.fields[0].constraints.minLength", "not supported"),
    ("minimum not a number", ("resources", 0, "schema", "fields", 1, "constraints", {"minimum": "low"}),
     "resources[0].schema.fields[1].constraints.minimum", "must be a number"),
    ("unknown onceonly key", ("resources", 0, "onceonly", "sharetype", "none"),
     "resources[0].onceonly.sharetype", "unknown key"),
    ("unknown catalog", ("resources", 0, "onceonly", "catalog", "399"),
     "resources[0].onceonly.catalog", "catalog 399 not found"),
    ("unknown category", ("resources", 0, "onceonly", "category", "042"),
     "resources[0].onceonly.category", "category 042 not found"),
    ("share condition missing", ("resources", 0, "onceonly", "share_type", "conditional"),
     "resources[0].onceonly.share_condition", "required when share_type is conditional"),
    ("bad share mode", ("resources", 0, "onceonly", "share_modes", ["verify", "fax"]),
     "resources[0].onceonly.share_modes[1]", "'fax'"),
    ("bad resource name", ("resources", 0, "name", "Bad-Name"), "resources[0].name", "must match"),
    ("missing title", ("resources", 0, "title", None), "resources[0].title", ""),
    ("schema is a path", ("resources", 0, "schema", "schema.json"), "resources[0].schema", "inline"),
    ("no fields", ("resources", 0, "schema", "fields", []), "resources[0].schema.fields", "at least 1"),
    ("field not an object", ("resources", 0, "schema", "fields", 1, "n"), "resources[0].schema.fields[1]",
     "must be an object"),
    ("no resources", ("resources", []), "resources", "non-empty"),
    ("summary differs", ("resources", 0, "onceonly", "summary", "y"), "resources[0].onceonly.summary", "differs"),
]


def _mutate(doc: dict[str, Any], change: tuple[Any, ...]) -> None:
    *where, key, value = change
    target: Any = doc
    for part in where:
        target = target[part]
    if value is None:
        del target[key]
    else:
        target[key] = value


@pytest.mark.parametrize(("case", "change", "path", "message"), CASES, ids=[c[0] for c in CASES])
def test_malformed_package_names_the_json_path(db: Database, case: str, change: tuple[Any, ...], path: str,
                                               message: str) -> None:
    with db.session() as s:
        org = new_org(s)
    doc = _base(org, unique("bad"))
    _mutate(doc, change)
    before = count_resources(db)
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_descriptor(s, CLI, doc)
    err = info.value
    assert err.field == path, err.errors
    assert err.message.startswith(f"{path}: ") and message in err.message
    assert err.errors[0] == {"path": path, "message": err.message.split(": ", 1)[1].split(" (and ")[0]}
    assert count_resources(db) == before


def test_department_catalog_of_another_provider_is_refused(db: Database) -> None:
    with db.session() as s:
        org, other = new_org(s), new_org(s)
    doc = _base(org, unique("theirs"))
    doc["resources"][0]["onceonly"]["catalog"] = f"3{other.number:02d}"
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_descriptor(s, CLI, doc)
    assert info.value.field == "resources[0].onceonly.catalog" and "belongs to" in info.value.message


def test_every_problem_is_reported_and_nothing_is_written(db: Database) -> None:
    with db.session() as s:
        org = new_org(s)
    good = _base(org, unique("good"))["resources"][0]
    good["onceonly"].update(category="123", category_name="新分类")  # would create a category
    bad = copy.deepcopy(good)
    bad["name"] = unique("bad")
    bad["schema"]["fields"][1]["type"] = "strng"
    bad["schema"]["fields"][0]["onceonly"]["code_list"] = "no such list"
    bad["schema"]["primaryKey"] = ["id", "missing"]
    twin = copy.deepcopy(good)
    before = count_resources(db)
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_descriptor(s, CLI, {"resources": [good, bad, twin]})
    paths = [e["path"] for e in info.value.errors]
    assert paths == ["resources[1].schema.fields[1].type", "resources[1].schema.primaryKey[1]",
                     "resources[2].name"]
    assert "(and 2 more problems)" in info.value.message
    assert count_resources(db) == before
    with db.session() as s:
        catalog = orgs.get_catalog(s, f"3{org.number:02d}")
        assert repo.category(s, catalog.id, "123") is None
    # the code list is only checked once the spec itself is valid; fixing the rest reveals it
    bad["schema"]["fields"][1]["type"] = "integer"
    bad["schema"]["primaryKey"] = ["id"]
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_descriptor(s, CLI, {"resources": [good, bad]})
    assert info.value.field == "resources[1].schema.fields[0].onceonly.code_list"
    assert count_resources(db) == before


def test_a_named_new_category_is_created(db: Database) -> None:
    with db.session() as s:
        org = new_org(s)
    doc = _base(org, unique("cat"))
    doc["resources"][0]["onceonly"].update(category="055", category_name="不动产")
    with db.session() as s:
        [done] = import_descriptor(s, CLI, doc)
        assert done.resource.category.code == "055" and done.resource.category.name == "不动产"
        assert done.resource.code.startswith(f"3{org.number:02d}055/")


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "datapackage.json"
    path.write_text('{\n  "resources": [\n    {"name": "x",,}\n  ]\n}\n', "utf-8")
    with pytest.raises(ValidationFailed) as info:
        read_descriptor(path)
    assert info.value.field == "line 3 column 18"
    assert "not valid JSON" in info.value.message and "line 3 column 18" in info.value.message
    path.write_bytes("{\"title\": \"中文目录\"}".encode("gb18030"))
    with pytest.raises(ValidationFailed, match="not UTF-8"):
        read_descriptor(path)
    path.write_text("[1, 2]", "utf-8")
    with pytest.raises(ValidationFailed) as info:
        import_datapackage(None, CLI, path)  # type: ignore[arg-type]  # fails before touching the database
    assert info.value.field == "(root)"


def test_import_reads_datapackage_json_inside_a_directory(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        org = new_org(s)
    doc = _base(org, unique("dir"))
    (tmp_path / "datapackage.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
    with db.session() as s:
        assert [r.name for r in import_datapackage(s, CLI, tmp_path)] == [doc["resources"][0]["name"]]


# -- what an import does to an existing resource ---------------------------------------------

def _published(db: Database) -> tuple[Resource, dict[str, Any]]:
    with db.session() as s:
        org = new_org(s)
        res = service.publish_resource(s, CLI, create(s, org))
        return res, descriptor_of(s, res.name)


def test_published_with_added_nullable_field_is_updated_in_place(db: Database) -> None:
    res, doc = _published(db)
    r = doc["resources"][0]
    r["title"] = "人口基本信息（新）"
    r["schema"]["fields"].insert(2, {"name": "nickname", "title": "别名", "type": "string",
                                     "constraints": {"maxLength": 20}})
    r["onceonly"]["query_fields"] = ["name", "nickname"]
    with db.session() as s:
        [done] = import_descriptor(s, CLI, doc)
        assert done.action == "updated" and done.resource.id == res.id
        assert done.resource.version == 1 and done.resource.status == "published"
    with db.session() as s:
        spec = service.spec_of(repo.resource_by_id(s, res.id))  # type: ignore[arg-type]
        assert spec.title == "人口基本信息（新）" and spec.query_fields == ["name", "nickname"]
        assert [f.name for f in spec.fields][-1] == "nickname"  # new columns come after the existing ones
        assert len(repo.versions_of(s, res.name)) == 1
    with db.session() as s:  # the same package again: nothing to do
        assert [i.action for i in import_descriptor(s, CLI, doc)] == ["unchanged"]


def test_published_with_changed_type_gets_a_new_draft_version(db: Database) -> None:
    res, doc = _published(db)
    fields = doc["resources"][0]["schema"]["fields"]
    age = next(f for f in fields if f["name"] == "age")
    age["type"] = "number"
    with db.session() as s:
        [done] = import_descriptor(s, CLI, doc)
        assert done.action == "new_version" and done.resource.version == 2 and done.resource.status == "draft"
        assert done.resource.code == res.code
        assert next(f for f in done.resource.fields if f.name == "age").type == "number"
    with db.session() as s:
        assert [v.status for v in repo.versions_of(s, res.name)] == ["published", "draft"]
        assert [i.action for i in import_descriptor(s, CLI, doc)] == ["unchanged"]  # compared with the draft
        age["title"] = "年龄（周岁）"
        [again] = import_descriptor(s, CLI, doc)
        assert again.action == "updated" and again.resource.version == 2  # the draft is edited in place


def test_published_with_new_required_field_gets_a_new_version(db: Database) -> None:
    _, doc = _published(db)
    doc["resources"][0]["schema"]["fields"].append({"name": "must", "title": "必填项",
                                                    "constraints": {"required": True}})
    with db.session() as s:
        [done] = import_descriptor(s, CLI, doc)
        assert done.action == "new_version" and done.resource.version == 2


def test_draft_is_updated_in_place(db: Database) -> None:
    with db.session() as s:
        org = new_org(s)
        res = create(s, org)
        doc = descriptor_of(s, res.name)
    doc["resources"][0]["schema"]["fields"].pop()  # drafts may lose fields
    doc["resources"][0]["schema"]["fields"][3]["type"] = "string"
    with db.session() as s:
        [done] = import_descriptor(s, CLI, doc)
        assert done.action == "updated" and done.resource.id == res.id and done.resource.version == 1
        assert [f.name for f in done.resource.fields][-1] == "married"


def test_retired_resource_is_described_again_as_a_new_version(db: Database) -> None:
    res, doc = _published(db)
    with db.session() as s:
        service.retire_resource(s, CLI, repo.resource_by_id(s, res.id))  # type: ignore[arg-type]
    with db.session() as s:
        [done] = import_descriptor(s, CLI, doc)
        assert done.action == "new_version" and done.resource.version == 2


def test_provider_of_an_existing_resource_cannot_change(db: Database) -> None:
    _, doc = _published(db)
    with db.session() as s:
        other = new_org(s)
    doc["resources"][0]["onceonly"].update(provider=other.code, catalog=f"3{other.number:02d}")
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        import_descriptor(s, CLI, doc)
    assert {e["path"] for e in info.value.errors} == {"resources[0].onceonly.provider",
                                                     "resources[0].onceonly.catalog"}


def test_steward_may_only_import_for_their_department(db: Database) -> None:
    with db.session() as s:
        mine, theirs = new_org(s), new_org(s)
        user, _ = accounts.create_user(s, CLI, unique("steward"), "steward", mine.id)
        steward = accounts.actor_for(user, None, via="api")
    doc = _base(mine, unique("ok"))
    doc["resources"].append(_base(theirs, unique("no"))["resources"][0])
    before = count_resources(db)
    with db.session() as s, pytest.raises(PermissionDenied) as info:
        import_descriptor(s, steward, doc)
    assert info.value.field == "resources[1].onceonly.provider"
    assert count_resources(db) == before
    shared = _base(mine, unique("shared"))
    shared["resources"][0]["onceonly"].update(catalog="101", category="077", category_name="新类")
    with db.session() as s, pytest.raises(PermissionDenied) as info:
        import_descriptor(s, steward, shared)  # shared catalogs' categories are the platform's
    assert info.value.field == "resources[0].onceonly.category"
    with db.session() as s:
        doc["resources"].pop()
        doc["resources"][0]["onceonly"].update(category="078", category_name="本部门新类")
        assert [i.action for i in import_descriptor(s, steward, doc)] == ["created"]


# -- HTTP ------------------------------------------------------------------------------------

@pytest.fixture
def client(db: Database) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from onceonly.app import create_app
    from onceonly.catalog.transfer_endpoints import router

    app = create_app(db.settings, db)
    if not any(getattr(r, "path", "") == "/api/v1/catalog/datapackage" for r in app.routes):
        app.include_router(router, prefix="/api/v1")
    with db.session() as s:
        user, _ = accounts.create_user(s, CLI, unique("admin"), "platform_admin", None)
        _, token = accounts.create_api_token(s, CLI, user, "t")
    with TestClient(app) as c:
        yield c, {"Authorization": f"Bearer {token}"}


def test_http_export_and_import(db: Database, client: tuple[TestClient, dict[str, str]]) -> None:
    c, auth = client
    with db.session(write=True) as s:  # the app's background worker may write meanwhile (SQLite)
        org = new_org(s)
    doc = _base(org, unique("http"))
    assert c.get("/api/v1/catalog/datapackage").status_code == 401
    created = c.post("/api/v1/catalog/datapackage", json=doc, headers=auth)
    assert created.status_code == 200, created.text
    [row] = created.json()
    assert row["name"] == doc["resources"][0]["name"] and row["action"] == "created"
    assert row["version"] == 1 and row["status"] == "draft" and row["code"].startswith(f"3{org.number:02d}001/")
    again = c.post("/api/v1/catalog/datapackage", params={"publish": "true"}, json=doc, headers=auth).json()
    assert [(r["action"], r["status"]) for r in again] == [("unchanged", "published")]
    package = c.get("/api/v1/catalog/datapackage", headers=auth).json()
    assert row["name"] in {r["name"] for r in package["resources"]}
    doc["resources"][0]["schema"]["fields"][1]["type"] = "strng"
    refused = c.post("/api/v1/catalog/datapackage", json=doc, headers=auth)
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["field"] == "resources[0].schema.fields[1].type"
    assert body["errors"] == [{"path": "resources[0].schema.fields[1].type",
                               "message": "unknown type 'strng'; use one of string, integer, number, boolean, "
                                          "date, datetime"}]
