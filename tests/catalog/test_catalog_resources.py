"""Resources: codes, drafts, publishing (the typed table), schema growth, versions, retirement,
search and permissions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy import types as sqltypes

from core_factories import CLI, add_org, add_user, fields, published, spec, unique
from onceonly.accounts.models import StaffAction
from onceonly.catalog import repository as repo
from onceonly.catalog import service
from onceonly.catalog.models import Resource
from onceonly.catalog.schemas import FieldSpec, ResourcePatch
from onceonly.db import Database
from onceonly.errors import Conflict, NotFound, PermissionDenied, SchemaChangeRefused, ValidationFailed
from onceonly.ops.setup import initialize
from onceonly.store import service as store


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)


def patch(**data: Any) -> ResourcePatch:
    return ResourcePatch.model_validate(data)


def current_fields(res: Resource) -> list[dict[str, Any]]:
    return [service.field_spec(f).model_dump(exclude_none=True) for f in res.fields]


# -- creation and codes ----------------------------------------------------------------------

def test_code_is_category_plus_sequence(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        first = service.create_resource(s, CLI, spec(org))
        second = service.create_resource(s, CLI, spec(org))
        catalog = f"3{org.number:02d}"
        assert first.code == f"{catalog}001/000001"
        assert second.code == f"{catalog}001/000002"
        basic = service.create_resource(s, CLI, spec(org, catalog="101"))
        basic2 = service.create_resource(s, CLI, spec(org, catalog="101"))
        assert re.fullmatch(r"101001/\d{6}", basic.code)
        assert int(basic2.code[-6:]) == int(basic.code[-6:]) + 1
        assert first.status == "draft" and first.version == 1 and first.table_name is None


def test_create_records_action_and_reads_back(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = service.create_resource(s, CLI, spec(org, summary="户籍人口", related=["x"]))
        out = service.resource_out(res)
    assert out.provider == org.code and out.provider_name == org.name
    assert out.key_fields == ["id"] and out.fields[0].required  # a key field is required
    assert [f.name for f in out.fields] == [f["name"] for f in fields()]
    with db.session() as s:
        assert s.scalar(select(StaffAction).where(StaffAction.action == "resource.create",
                                                  StaffAction.target == f"resource:{res.code}"))
        assert service.get_resource(s, res.name).id == res.id
        assert service.get_resource(s, str(res.id)).id == res.id
        assert service.get_resource(s, res.code).id == res.id
        with pytest.raises(NotFound):
            service.get_resource(s, unique("missing"))


def test_duplicate_name_is_a_conflict(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = service.create_resource(s, CLI, spec(org))
        with pytest.raises(Conflict) as info:
            service.create_resource(s, CLI, spec(org, name=res.name))
    assert info.value.field == "name"


def test_unknown_category_and_foreign_department_catalog(db: Database) -> None:
    with db.session() as s:
        org, other = add_org(s), add_org(s)
        with pytest.raises(ValidationFailed) as info:
            service.create_resource(s, CLI, spec(org, category="999"))
        assert info.value.field == "category"
        with pytest.raises(ValidationFailed) as info:
            service.create_resource(s, CLI, spec(org, catalog=f"3{other.number:02d}"))
        assert info.value.field == "catalog"
        with pytest.raises(NotFound):
            service.create_resource(s, CLI, spec(org, catalog="199"))


def test_code_list_binding(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        good = spec(org, fields=fields({"name": "sex", "title": "性别", "code_list": "GB/T 2261.1"}))
        assert service.create_resource(s, CLI, good).fields[-1].code_list == "GB/T 2261.1"
        bad = spec(org, fields=fields({"name": "sex", "title": "性别", "code_list": "NO-SUCH-LIST"}))
        with pytest.raises(ValidationFailed) as info:
            service.create_resource(s, CLI, bad)
    assert info.value.field == "fields[7].code_list"
    assert "NO-SUCH-LIST" in info.value.message


# -- drafts ----------------------------------------------------------------------------------

def test_draft_edit_metadata_fields_and_keys(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = service.create_resource(s, CLI, spec(org))
        new_fields = [*fields()[:3], {"name": "extra", "title": "附加", "type": "string", "length": 8}]
        service.update_resource(s, CLI, res, patch(title="新标题", update_cycle="monthly", fields=new_fields,
                                                   key_fields=["id", "n"], query_fields=["extra"]))
    with db.session() as s:
        res = service.get_resource(s, res.name)
        assert res.title == "新标题" and res.update_cycle == "monthly"
        assert [f.name for f in res.fields] == ["id", "name", "n", "extra"]
        assert res.key_fields == ["id", "n"] and res.query_fields == ["extra"]
        assert next(f for f in res.fields if f.name == "n").required
        assert res.status == "draft"


def test_draft_edit_keeps_metadata_consistent(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = service.create_resource(s, CLI, spec(org))
        assert res.share_modes == ["verify", "query", "api", "bulk"]
        service.update_resource(s, CLI, res, patch(share_type="none"))
        assert res.share_type == "none" and res.share_modes == []  # nothing is shared, by no mode


@pytest.mark.parametrize(("changes", "field"), [
    ({"key_fields": ["nope"]}, "key_fields"),
    ({"fields": [{"name": "other", "title": "其他"}]}, "key_fields"),  # drops the key field
    ({"share_type": "conditional", "share_condition": None}, "share_condition"),
    ({"title": "x" * 201}, "title"),
])
def test_inconsistent_draft_edit_is_a_validation_error(db: Database, changes: dict[str, Any], field: str) -> None:
    """Not an internal error: the message names what is wrong."""
    with db.session() as s:
        org = add_org(s)
        res = service.create_resource(s, CLI, spec(org))
    with pytest.raises(ValidationFailed) as info, db.session() as s:
        service.update_resource(s, CLI, service.get_resource(s, res.id), patch(**changes))
    assert field in info.value.message
    with db.session() as s:  # nothing of the failed edit stuck
        assert service.get_resource(s, res.id).title == "测试资源"


# -- publishing: the typed table -------------------------------------------------------------

def test_publish_creates_the_typed_table(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = service.create_resource(s, CLI, spec(org, query_fields=["name", "born"]))
        service.publish_resource(s, CLI, res)
        assert res.status == "published" and res.publish_date is not None
        table = res.table_name
    assert table == f"r_{res.name}_v1"
    insp = inspect(db.engine)
    cols = {c["name"]: c for c in insp.get_columns(table)}
    expected: dict[str, type] = {
        "id": sqltypes.String, "name": sqltypes.String, "n": sqltypes.Integer, "score": sqltypes.Float,
        "born": sqltypes.Date, "flag": sqltypes.Boolean, "ts": sqltypes.DateTime,
        "_version": sqltypes.Integer, "_created_at": sqltypes.DateTime, "_updated_at": sqltypes.DateTime,
        "_batch_id": sqltypes.Integer, "_deleted": sqltypes.Boolean, "_digest": sqltypes.Integer,
    }
    assert set(cols) == set(expected)
    for name, kind in expected.items():
        assert isinstance(cols[name]["type"], kind), (name, cols[name]["type"])
    assert cols["id"]["type"].length == 20 and cols["name"]["type"].length == 100
    assert not cols["id"]["nullable"] and cols["name"]["nullable"]
    assert insp.get_pk_constraint(table)["constrained_columns"] == ["id"]
    indexed = {tuple(ix["column_names"]) for ix in insp.get_indexes(table)}
    assert {("name",), ("born",)} <= indexed
    with db.session() as s:
        assert s.scalar(select(StaffAction).where(StaffAction.action == "resource.publish",
                                                  StaffAction.target == f"resource:{res.code}"))


def test_composite_key_is_the_primary_key(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = published(s, org, key_fields=["id", "born"], query_fields=[])
    pk = inspect(db.engine).get_pk_constraint(res.table_name)["constrained_columns"]
    assert pk == ["id", "born"]


def test_only_drafts_publish(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = published(s, org)
        with pytest.raises(Conflict):
            service.publish_resource(s, CLI, res)


# -- published schema changes ----------------------------------------------------------------

def test_published_grows_by_a_nullable_field(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = published(s, org)
        store.upsert_rows(s, res, [{"id": "a", "name": "甲"}])
    with db.session() as s:
        res = service.get_resource(s, res.id)
        grown = [*current_fields(res), {"name": "remark", "title": "备注", "type": "string", "length": 50}]
        service.update_resource(s, CLI, res, patch(fields=grown, query_fields=["name", "remark"], title="改名"))
    cols = {c["name"]: c for c in inspect(db.engine).get_columns(res.table_name)}
    assert "remark" in cols and cols["remark"]["nullable"]
    assert any(ix["column_names"] == ["remark"] for ix in inspect(db.engine).get_indexes(res.table_name))
    with db.session() as s:
        res = service.get_resource(s, res.id)
        assert res.title == "改名" and res.status == "published"
        result = store.upsert_rows(s, res, [{"id": "a", "remark": "新列可写"}, {"id": "b"}])
        assert (result.inserted, result.updated) == (1, 1)
        assert store.get_row(s, res, ("a",))["remark"] == "新列可写"  # type: ignore[index]
        assert store.get_row(s, res, ("a",))["name"] == "甲"  # type: ignore[index]


def test_resending_the_fields_as_created_is_not_a_change(db: Database) -> None:
    """Clients send back what they created: the key field without required=true is the same field."""
    with db.session() as s:
        org = add_org(s)
        res = published(s, org)
        as_created = [*fields(), {"name": "memo", "title": "备注"}]
        service.update_resource(s, CLI, res, patch(fields=as_created))
        assert [f.name for f in res.fields][-1] == "memo"


@pytest.mark.parametrize(("edit", "field_name", "where"), [
    ("remove", "score", "fields.score"),
    ("retype", "n", "fields[2].type"),
    ("required", "remark", "fields[7].required"),
    ("length", "name", "fields[1].length"),
])
def test_published_refuses_breaking_field_changes(db: Database, edit: str, field_name: str, where: str) -> None:
    with db.session() as s:
        org = add_org(s)
        res = published(s, org)
        changed = current_fields(res)
        if edit == "remove":
            changed = [f for f in changed if f["name"] != field_name]
        elif edit == "retype":
            changed[2]["type"] = "string"
        elif edit == "required":
            changed.append({"name": "remark", "title": "备注", "required": True})
        else:
            changed[1]["length"] = 200
        with pytest.raises(SchemaChangeRefused) as info:
            service.update_resource(s, CLI, res, patch(fields=changed))
    assert info.value.field == where
    assert field_name in info.value.message and "new version" in info.value.message
    assert info.value.status == 409


def test_published_refuses_key_change(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = published(s, org)
        with pytest.raises(SchemaChangeRefused) as info:
            service.update_resource(s, CLI, res, patch(key_fields=["id", "n"]))
    assert info.value.field == "key_fields" and "new version" in info.value.message


def test_refused_change_leaves_table_and_catalog_alone(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = published(s, org)
    changed = [f for f in fields() if f["name"] != "flag"]
    with pytest.raises(SchemaChangeRefused), db.session() as s:
        service.update_resource(s, CLI, service.get_resource(s, res.id), patch(fields=changed, title="x"))
    with db.session() as s:
        again = service.get_resource(s, res.id)
        assert again.title == "测试资源" and "flag" in [f.name for f in again.fields]
    assert "flag" in {c["name"] for c in inspect(db.engine).get_columns(res.table_name)}


# -- versions and retirement -----------------------------------------------------------------

def test_new_version_keeps_code_and_publishing_it_retires_v1(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        v1 = published(s, org)
        changed = spec(org, name=v1.name, fields=[f for f in fields() if f["name"] != "score"])
        v2 = service.new_version(s, CLI, v1, changed)
        assert (v2.version, v2.code, v2.status, v2.previous_id) == (2, v1.code, "draft", v1.id)
        with pytest.raises(Conflict):  # one draft at a time
            service.new_version(s, CLI, v1)
        assert service.get_resource(s, v1.name).id == v1.id  # the published one is still current
        service.publish_resource(s, CLI, v2)
        assert v1.status == "retired" and v2.table_name == f"r_{v1.name}_v2"
    with db.session() as s:
        assert [(r.version, r.status) for r in repo.versions_of(s, v1.name)] == [(1, "retired"), (2, "published")]
        assert service.get_resource(s, v1.code).version == 2
    cols = {c["name"] for c in inspect(db.engine).get_columns(f"r_{v1.name}_v2")}
    assert "score" not in cols
    assert inspect(db.engine).has_table(f"r_{v1.name}_v1")  # v1's data is kept


def test_new_version_copies_when_no_spec_given_and_keeps_name(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        v1 = published(s, org)
        with pytest.raises(ValidationFailed) as info:
            service.new_version(s, CLI, v1, spec(org, name=unique("other")))
        assert info.value.field == "name"
        v2 = service.new_version(s, CLI, v1)
        assert [f.name for f in v2.fields] == [f.name for f in v1.fields]
        service.update_resource(s, CLI, v2, patch(key_fields=["id", "n"]))  # a draft may change its key
        assert v2.key_fields == ["id", "n"]


def test_retire(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        draft = service.create_resource(s, CLI, spec(org))
        with pytest.raises(Conflict):
            service.retire_resource(s, CLI, draft)
        res = published(s, org)
        service.retire_resource(s, CLI, res)
        assert res.status == "retired"
        with pytest.raises(Conflict):
            service.retire_resource(s, CLI, res)
        with pytest.raises(Conflict):
            service.update_resource(s, CLI, res, patch(title="x"))
        with pytest.raises(Conflict):
            store.upsert_rows(s, res, [{"id": "1"}])


# -- search ----------------------------------------------------------------------------------

def test_search_by_name_code_and_provider(db: Database) -> None:
    with db.session() as s:
        org = add_org(s, name=unique("宣城市搜索测试局"))
        res = service.create_resource(s, CLI, spec(org, title="企业登记信息"))
        other = service.create_resource(s, CLI, spec(add_org(s)))

        def found(q: str) -> set[int]:
            rows, total = repo.search_resources(s, q=q, limit=200)
            assert total == len(rows)
            return {r.id for r in rows}

        assert res.id in found(res.name) and other.id not in found(res.name)
        assert found(res.code) == {res.id}
        assert res.id in found(org.name) and other.id not in found(org.name)
        assert res.id in found("企业登记")
        rows, _ = repo.search_resources(s, provider_id=org.id)
        assert [r.id for r in rows] == [res.id]


@pytest.mark.parametrize("q", ["%' OR 1=1 --", "%", "_%_", "\\", "'; DROP TABLE resources; --", "x" * 5000,
                               "\u202e\u0000\ud7ff", "😀政务", "\x00"])
def test_hostile_search_matches_nothing_and_does_not_fail(db: Database, q: str) -> None:
    with db.session() as s:
        org = add_org(s)
        service.create_resource(s, CLI, spec(org))
        rows, total = repo.search_resources(s, q=q)
        assert rows == [] and total == 0
    with db.session() as s:
        assert s.scalar(select(Resource.id).limit(1)) is not None


def test_retired_are_hidden_from_default_search(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        res = published(s, org)
        service.retire_resource(s, CLI, res)
        assert res.id not in {r.id for r in repo.search_resources(s, q=res.name)[0]}
        assert res.id in {r.id for r in repo.search_resources(s, q=res.name, status="retired")[0]}


# -- permissions -----------------------------------------------------------------------------

def test_steward_edits_own_org_only(db: Database) -> None:
    with db.session() as s:
        org_a, org_b = add_org(s), add_org(s)
        _, steward_a = add_user(s, "steward", org_a)
        own = service.create_resource(s, steward_a, spec(org_a))
        service.update_resource(s, steward_a, own, patch(title="自己的"))
        service.publish_resource(s, steward_a, own)
        foreign = service.create_resource(s, CLI, spec(org_b))
        with pytest.raises(PermissionDenied):
            service.create_resource(s, steward_a, spec(org_b))
        with pytest.raises(PermissionDenied):
            service.update_resource(s, steward_a, foreign, patch(title="别人的"))
        with pytest.raises(PermissionDenied):
            service.publish_resource(s, steward_a, foreign)
        with pytest.raises(PermissionDenied):
            service.new_version(s, steward_a, foreign)
        published_b = published(s, org_b)
        with pytest.raises(PermissionDenied):
            service.retire_resource(s, steward_a, published_b)
        assert foreign.title == "测试资源"


@pytest.mark.parametrize("role", ["reviewer", "auditor", "security_admin"])
def test_roles_without_resource_edit(db: Database, role: str) -> None:
    with db.session() as s:
        org = add_org(s)
        _, actor = add_user(s, role, org if role == "reviewer" else None)
        with pytest.raises(PermissionDenied):
            service.create_resource(s, actor, spec(org))


def test_field_spec_rejects_system_and_bad_names() -> None:
    for bad in ("_version", "Name", "1abc", "a-b", "名字", "x" * 49):
        with pytest.raises(ValueError):
            FieldSpec(name=bad, title="t")


def test_long_names_get_distinct_indexes(db: Database) -> None:
    """Index names are cut to 63 chars; two query fields sharing a long prefix still get one each."""
    long_name = unique("r" * 38)[:48]
    extra = [{"name": "address_home_line", "title": "住址"}, {"name": "address_work_line", "title": "单位地址"}]
    with db.session() as s:
        res = published(s, add_org(s), name=long_name, fields=fields(*extra),
                        query_fields=["address_home_line", "address_work_line"])
    indexed = {tuple(ix["column_names"]) for ix in inspect(db.engine).get_indexes(res.table_name)}
    assert {("address_home_line",), ("address_work_line",)} <= indexed
