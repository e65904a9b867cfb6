"""Code lists (代码集) and code mappings (编码对应关系)."""

from __future__ import annotations

import pytest

from core_factories import CLI, add_org, add_user, unique
from onceonly.catalog import codelists
from onceonly.catalog import repository as repo
from onceonly.catalog.schemas import CodeListIn, MappingIn
from onceonly.db import Database
from onceonly.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from onceonly.ops.setup import initialize


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)


def test_shipped_standard_lists_name_source_and_date(db: Database) -> None:
    with db.session() as s:
        lists = {cl.code: (cl, n) for cl, n in repo.list_code_lists(s)}
    for code in ("GB/T 2261.1", "GB 3304", "GB/T 2260"):
        cl, size = lists[code]
        assert cl.standard and cl.source and cl.source_date and size > 0
    assert "GB/T 2261.1" in lists["GB/T 2261.1"][0].source
    assert lists["GB/T 2261.1"][1] == 4
    assert lists["GB 3304"][1] >= 56
    assert "GB/T 2260" in lists["GB/T 2260"][0].source


def test_sex_and_ethnic_codes(db: Database) -> None:
    with db.session() as s:
        assert codelists.codes_set(s, "GB/T 2261.1") == {"0", "1", "2", "9"}
        ethnic = {c.code: c.name for c in repo.codes_of(s, codelists.get_code_list(s, "GB 3304").id)}
        assert ethnic["01"] == "汉族" and ethnic["56"] == "基诺族"


def test_divisions_list_has_xuancheng_and_keeps_retired_codes(db: Database) -> None:
    with db.session() as s:
        current = codelists.codes_set(s, "GB/T 2260")
        everything = codelists.codes_set(s, "GB/T 2260", current_only=False)
        assert "341800" in current
        assert "110103" not in current and "110103" in everything


def test_unknown_list(db: Database) -> None:
    with db.session() as s, pytest.raises(NotFound):
        codelists.get_code_list(s, "NOPE")


def test_department_list_created_by_its_steward(db: Database) -> None:
    code = unique("LOCAL")
    with db.session() as s:
        org = add_org(s)
        _, steward = add_user(s, "steward", org)
        cl = codelists.create_code_list(s, steward, CodeListIn(
            code=code, name="本局证件类型", source="本局业务规范", org=org.code,
            codes=[("A", "居民身份证"), ("B", " 护照 ")]))
        assert not cl.standard and cl.org_id == org.id
        out = codelists.code_list_out(cl, 2)
        assert out.org == org.code and out.size == 2
        assert codelists.codes_set(s, code) == {"A", "B"}
        codelists.add_codes(s, steward, cl, [("C", "港澳通行证")])
        with pytest.raises(Conflict):
            codelists.add_codes(s, steward, cl, [("A", "again")])
        with pytest.raises(Conflict):
            codelists.create_code_list(s, steward, CodeListIn(code=code, name="x", org=org.code))
    with db.session() as s:
        assert {c.name for c in repo.codes_of(s, codelists.get_code_list(s, code).id)} == {
            "居民身份证", "护照", "港澳通行证"}


@pytest.mark.parametrize("pairs", [[("A", "x"), ("A", "y")], [("", "x")], [("  ", "x")]])
def test_repeated_or_empty_codes_refused(db: Database, pairs: list[tuple[str, str]]) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        codelists.create_code_list(s, CLI, CodeListIn(code=unique("BAD"), name="x", codes=pairs))
    assert info.value.field is not None and info.value.field.startswith("codes[")


def test_standard_lists_cannot_be_edited(db: Database) -> None:
    with db.session() as s, pytest.raises(Conflict):
        codelists.add_codes(s, CLI, codelists.get_code_list(s, "GB/T 2261.1"), [("3", "第三性别")])


def test_steward_of_another_org_cannot_touch_the_list(db: Database) -> None:
    with db.session() as s:
        org_a, org_b = add_org(s), add_org(s)
        _, steward_b = add_user(s, "steward", org_b)
        cl = codelists.create_code_list(s, CLI, CodeListIn(code=unique("A"), name="x", org=org_a.code))
        with pytest.raises(PermissionDenied):
            codelists.add_codes(s, steward_b, cl, [("Z", "z")])
        with pytest.raises(PermissionDenied):
            codelists.create_code_list(s, steward_b, CodeListIn(code=unique("B"), name="x", org=org_a.code))
        with pytest.raises(PermissionDenied):  # platform-wide lists are the platform admin's
            codelists.create_code_list(s, steward_b, CodeListIn(code=unique("C"), name="x"))


def test_mappings_to_a_standard_list(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        _, steward = add_user(s, "steward", org)
        n = codelists.set_mappings(s, steward, MappingIn(org=org.code, code_list="GB/T 2261.1", entries=[
            {"local_code": "M", "standard_code": "1", "local_name": "男"},
            {"local_code": "F", "standard_code": "2"},
        ]))
        assert n == 2
        assert codelists.mapping_dict(s, org.id, "GB/T 2261.1") == {"M": "1", "F": "2"}
        # a second load changes and adds, it does not duplicate
        codelists.set_mappings(s, steward, MappingIn(org=org.code, code_list="GB/T 2261.1", entries=[
            {"local_code": "F", "standard_code": "2"}, {"local_code": "U", "standard_code": "0"},
            {"local_code": "M", "standard_code": "9"},
        ]))
    with db.session() as s:
        assert codelists.mapping_dict(s, org.id, "GB/T 2261.1") == {"M": "9", "F": "2", "U": "0"}
        assert len(repo.mappings(s, org.id, None)) == 3


@pytest.mark.parametrize(("entry", "field"), [
    ({"local_code": "X", "standard_code": "3"}, "entries[1].standard_code"),
    ({"local_code": "X", "standard_code": ""}, "entries[1].standard_code"),
    ({"local_code": "", "standard_code": "1"}, "entries[1].local_code"),
])
def test_mapping_to_a_non_member_code_is_refused(db: Database, entry: dict[str, str], field: str) -> None:
    with db.session() as s:
        org = add_org(s)
    with pytest.raises(ValidationFailed) as info, db.session() as s:
        codelists.set_mappings(s, CLI, MappingIn(org=org.code, code_list="GB/T 2261.1", entries=[
            {"local_code": "M", "standard_code": "1"}, entry]))
    assert info.value.field == field
    with db.session() as s:  # all or nothing
        assert codelists.mapping_dict(s, org.id, "GB/T 2261.1") == {}


def test_mapping_entries_are_typed_and_bounded() -> None:
    from pydantic import ValidationError

    for entry in ({"standard_code": "1"}, {"local_code": "M", "standard_code": "1", "local_name": {"a": 1}},
                  {"local_code": "M" * 101, "standard_code": "1"}):
        with pytest.raises(ValidationError):
            MappingIn(org="x", code_list="GB/T 2261.1", entries=[entry])  # type: ignore[list-item]


def test_mapping_to_a_retired_division_is_refused(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        codelists.set_mappings(s, CLI, MappingIn(org=org.code, code_list="GB/T 2260", entries=[
            {"local_code": "宣城", "standard_code": "341800"}]))
        with pytest.raises(ValidationFailed):
            codelists.set_mappings(s, CLI, MappingIn(org=org.code, code_list="GB/T 2260", entries=[
                {"local_code": "崇文", "standard_code": "110103"}]))


def test_steward_cannot_map_for_another_org(db: Database) -> None:
    with db.session() as s:
        org_a, org_b = add_org(s), add_org(s)
        _, steward_a = add_user(s, "steward", org_a)
        with pytest.raises(PermissionDenied):
            codelists.set_mappings(s, steward_a, MappingIn(org=org_b.code, code_list="GB/T 2261.1", entries=[
                {"local_code": "M", "standard_code": "1"}]))
