"""Organizations and the catalog tree: standard catalogs, department catalogs 3NN, categories."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core_factories import CLI, add_org, add_user, new_uscc, unique
from onceonly.accounts.models import StaffAction
from onceonly.catalog import orgs
from onceonly.catalog import repository as repo
from onceonly.catalog.schemas import CatalogIn, CategoryIn, OrgIn
from onceonly.db import Database
from onceonly.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from onceonly.ops.setup import initialize


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)
    initialize(db)  # idempotent


def test_standard_catalogs_exist(db: Database) -> None:
    with db.session() as s:
        tree = {c.code: c for c in orgs.catalog_tree(s)}
    for code in ("101", "102", "103", "104", "105"):
        assert tree[code].kind == "basic"
    for n in range(1, 13):
        assert tree[f"2{n:02d}"].kind == "theme"
    assert tree["101"].name == "人口基础信息资源目录"
    assert [c.code for c in tree["101"].categories] == ["001"]
    with db.session() as s:  # initialize twice made each only once
        assert len([c for c in repo.list_catalogs(s) if c.code == "101"]) == 1


def test_add_org_creates_its_department_catalog(db: Database) -> None:
    code = new_uscc()
    with db.session() as s:
        parent = add_org(s)
        org = orgs.add_org(s, CLI, OrgIn(code=code.lower(), name=" 宣城市公安局 ", short_name="公安局",
                                         parent=parent.code, region="341800"))
        assert org.code == code  # normalized
        assert org.name == "宣城市公安局"
        assert org.number == parent.number + 1
    with db.session() as s:
        catalog = orgs.get_catalog(s, f"3{org.number:02d}")
        assert catalog.kind == "department" and catalog.org_id == org.id
        assert catalog.name == "宣城市公安局信息资源目录"
        assert [c.code for c in catalog.categories] == ["001"]
        out = orgs.org_out(orgs.get_org(s, code.lower()))
        assert out.parent_code == parent.code and out.region == "341800"
        assert s.scalar(select(StaffAction).where(StaffAction.target == f"org:{code}")) is not None


@pytest.mark.parametrize("bad", ["", "123", "113418000030041N16", "113418000030041I15"])
def test_invalid_uscc_names_code(db: Database, bad: str) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        orgs.add_org(s, CLI, OrgIn(code=bad, name="x"))
    assert info.value.field == "code"
    assert info.value.message.startswith("code: ")


def test_unknown_parent(db: Database) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        orgs.add_org(s, CLI, OrgIn(code=new_uscc(), name="x", parent=new_uscc()))
    assert info.value.field == "parent"


@pytest.mark.parametrize("region", ["999999", "110103", "34180", "abcdef"])
def test_unknown_or_retired_region(db: Database, region: str) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        orgs.add_org(s, CLI, OrgIn(code=new_uscc(), name="x", region=region))
    assert info.value.field == "region"


def test_duplicate_org(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
    with db.session() as s, pytest.raises(Conflict) as info:
        orgs.add_org(s, CLI, OrgIn(code=org.code, name="again"))
    assert info.value.field == "code"


def test_get_unknown_org(db: Database) -> None:
    with db.session() as s, pytest.raises(NotFound):
        orgs.get_org(s, new_uscc())


def test_only_platform_admin_adds_orgs(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        for role, o in (("steward", org), ("dept_admin", org), ("security_admin", None), ("auditor", None)):
            _, actor = add_user(s, role, o)
            with pytest.raises(PermissionDenied):
                orgs.add_org(s, actor, OrgIn(code=new_uscc(), name="x"))
        _, admin = add_user(s, "platform_admin")
        assert orgs.add_org(s, admin, OrgIn(code=new_uscc(), name=unique("y"))).id


def test_create_catalog_and_category(db: Database) -> None:
    with db.session() as s:
        existing = {c.code for c in repo.list_catalogs(s)}
        item = next(f"{n:02d}" for n in range(13, 100) if f"2{n:02d}" not in existing)
        cat = orgs.create_catalog(s, CLI, CatalogIn(kind="theme", item=item, name="数字乡村"))
        assert cat.code == f"2{item}"
        with pytest.raises(Conflict):
            orgs.create_catalog(s, CLI, CatalogIn(kind="theme", item=item, name="again"))
        orgs.add_category(s, CLI, cat, CategoryIn(code="002", name="农业"))
        with pytest.raises(Conflict):
            orgs.add_category(s, CLI, cat, CategoryIn(code="002", name="again"))
    with db.session() as s:
        tree = {c.code: c for c in orgs.catalog_tree(s)}
        assert [k.code for k in tree[f"2{item}"].categories] == ["001", "002"]


def test_department_catalog_needs_an_org(db: Database) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        orgs.create_catalog(s, CLI, CatalogIn(kind="department", item="98", name="x"))
    assert info.value.field == "org"


def test_steward_cannot_create_catalogs(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        _, steward = add_user(s, "steward", org)
        with pytest.raises(PermissionDenied):
            orgs.create_catalog(s, steward, CatalogIn(kind="theme", item="97", name="x"))
