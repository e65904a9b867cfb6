"""Staff accounts: roles, org scoping, three-role separation (三员分立), the staff action log."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from core_factories import CLI, add_org, add_user, unique
from onceonly.accounts import service
from onceonly.accounts.models import StaffAction, User
from onceonly.accounts.roles import ORG_ROLES, ROLES
from onceonly.catalog import orgs
from onceonly.catalog.schemas import OrgIn
from onceonly.db import Database
from onceonly.errors import Conflict, PermissionDenied, ValidationFailed
from onceonly.kit.passwords import verify_password
from onceonly.ops.setup import initialize


@pytest.fixture(scope="module", autouse=True)
def ready(db: Database) -> None:
    initialize(db)


@pytest.mark.parametrize("role", ROLES)
def test_create_user_of_each_role(db: Database, role: str) -> None:
    with db.session() as s:
        org = add_org(s) if role in ORG_ROLES else None
        name = unique(role)
        _, password = service.create_user(s, CLI, name, role, org.id if org else None, "张三")
    with db.session() as s:
        stored = s.scalar(select(User).where(User.username == name))
        assert stored is not None and stored.role == role and stored.active
        assert stored.org_id == (org.id if org else None)
        assert stored.display_name == "张三"
        # argon2id at rest, never the password itself
        assert stored.password_hash.startswith("$argon2id$") and password not in stored.password_hash
        assert verify_password(stored.password_hash, password)


@pytest.mark.parametrize("role", sorted(ORG_ROLES))
def test_org_roles_need_an_org(db: Database, role: str) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        service.create_user(s, CLI, unique(role), role, None)
    assert info.value.field == "org"


@pytest.mark.parametrize("role", ["platform_admin", "security_admin", "auditor"])
def test_platform_roles_refuse_an_org(db: Database, role: str) -> None:
    with db.session() as s:
        org = add_org(s)
        with pytest.raises(ValidationFailed) as info:
            service.create_user(s, CLI, unique(role), role, org.id)
    assert info.value.field == "org"


@pytest.mark.parametrize(("username", "role", "field"), [
    ("a", "auditor", "username"), ("has space", "auditor", "username"), ("中文名", "auditor", "username"),
    ("ok_name", "superuser", "role"),
])
def test_bad_username_or_role(db: Database, username: str, role: str, field: str) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as info:
        service.create_user(s, CLI, username, role, None)
    assert info.value.field == field


def test_duplicate_username(db: Database) -> None:
    name = unique("dup")
    with db.session() as s:
        service.create_user(s, CLI, name, "auditor", None)
    with db.session() as s, pytest.raises(Conflict):
        service.create_user(s, CLI, name, "security_admin", None)


def test_given_password_must_meet_the_rule(db: Database) -> None:
    with db.session() as s:
        with pytest.raises(ValidationFailed) as info:
            service.create_user(s, CLI, unique("weak"), "auditor", None, password="password")
        assert info.value.field == "password"
        _, password = service.create_user(s, CLI, unique("strong"), "auditor", None, password="Str0ng-Passw0rd")
        assert password == "Str0ng-Passw0rd"


def test_dept_admin_creates_only_steward_or_reviewer_in_own_org(db: Database) -> None:
    with db.session() as s:
        org_a, org_b = add_org(s), add_org(s)
        _, dept_admin = add_user(s, "dept_admin", org_a)
        for role in ("steward", "reviewer"):
            user, _ = service.create_user(s, dept_admin, unique(role), role, org_a.id)
            assert user.org_id == org_a.id
        with pytest.raises(PermissionDenied):
            service.create_user(s, dept_admin, unique("x"), "steward", org_b.id)
        with pytest.raises(PermissionDenied):
            service.create_user(s, dept_admin, unique("x"), "dept_admin", org_a.id)
        for role in ("platform_admin", "security_admin", "auditor"):
            with pytest.raises(PermissionDenied):
                service.create_user(s, dept_admin, unique("x"), role, None)


def test_dept_admin_cannot_disable_platform_or_other_org_accounts(db: Database) -> None:
    with db.session() as s:
        org_a, org_b = add_org(s), add_org(s)
        _, dept_admin = add_user(s, "dept_admin", org_a)
        own_steward, _ = add_user(s, "steward", org_a)
        other_steward, _ = add_user(s, "steward", org_b)
        security, _ = add_user(s, "security_admin")
        peer_admin, _ = add_user(s, "dept_admin", org_a)
        service.set_active(s, dept_admin, own_steward, False)
        assert not own_steward.active
        for victim in (other_steward, security, peer_admin):
            with pytest.raises(PermissionDenied):
                service.set_active(s, dept_admin, victim, False)
            with pytest.raises(PermissionDenied):
                service.set_password(s, dept_admin, victim, "An0ther-Passw0rd")
            with pytest.raises(PermissionDenied):
                service.create_api_token(s, dept_admin, victim, "sneaky")
            assert victim.active


@pytest.mark.parametrize("role", ["auditor", "steward", "reviewer", "platform_admin"])
def test_roles_without_user_manage_cannot_create_users(db: Database, role: str) -> None:
    with db.session() as s:
        org = add_org(s)
        _, actor = add_user(s, role, org if role in ORG_ROLES else None)
        with pytest.raises(PermissionDenied):
            service.create_user(s, actor, unique("x"), "reviewer", org.id)


def test_auditor_cannot_create_orgs_or_resources(db: Database) -> None:
    """三员分立: the auditor reads the trail and changes nothing."""
    from core_factories import spec
    from onceonly.catalog import service as catalog

    with db.session() as s:
        org = add_org(s)
        _, auditor = add_user(s, "auditor")
        with pytest.raises(PermissionDenied):
            orgs.add_org(s, auditor, OrgIn(code="91341800MA2N0AAAA0", name="x"))
        with pytest.raises(PermissionDenied):
            catalog.create_resource(s, auditor, spec(org))
        assert auditor.can("audit.read") and not auditor.can("user.manage")


def test_security_admin_manages_users_but_not_the_catalog(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        _, security = add_user(s, "security_admin")
        user, _ = service.create_user(s, security, unique("steward"), "steward", org.id)
        assert user.role == "steward"
        with pytest.raises(PermissionDenied):
            orgs.add_org(s, security, OrgIn(code="91341800MA2N0AAAA0", name="x"))


def test_every_change_records_who_what_when_where(db: Database) -> None:
    with db.session() as s:
        org = add_org(s)
        admin_user, admin = add_user(s, "security_admin", ip="192.0.2.7")
        name = unique("steward")
        user, _ = service.create_user(s, admin, name, "steward", org.id)
        service.set_active(s, admin, user, False)
        service.set_active(s, admin, user, True)
        token, _ = service.create_api_token(s, admin, user, "etl")
        service.revoke_api_token(s, admin, token)
        service.set_password(s, admin, user, "N3w-Passw0rd-x")
    with db.session() as s:
        rows = s.scalars(select(StaffAction).where(StaffAction.target == f"user:{name}")
                         .order_by(StaffAction.id)).all()
        assert [r.action for r in rows] == ["user.create", "user.disable", "user.enable", "token.create",
                                            "token.revoke", "user.password"]
        for r in rows:
            assert r.username == admin_user.username and r.user_id == admin_user.id
            assert r.ip == "192.0.2.7" and r.outcome == "ok" and r.at is not None
        assert rows[0].detail == {"role": "steward", "org_id": org.id}
        org_rows = s.scalars(select(StaffAction).where(StaffAction.target == f"org:{org.code}")).all()
        assert [r.action for r in org_rows] == ["org.create"]


def test_failed_change_leaves_no_action_record(db: Database) -> None:
    name = unique("ghost")
    with pytest.raises(ValidationFailed), db.session() as s:
        service.create_user(s, CLI, name, "auditor", None)
        raise ValidationFailed("abort the unit of work")
    with db.session() as s:
        assert s.scalar(select(StaffAction).where(StaffAction.target == f"user:{name}")) is None
        assert s.scalar(select(User).where(User.username == name)) is None


@pytest.mark.parametrize("statement", [
    "UPDATE staff_actions SET outcome = 'ok', username = 'someone-else'",
    "DELETE FROM staff_actions",
])
def test_staff_actions_cannot_be_changed_or_erased(db: Database, statement: str) -> None:
    with db.session() as s:
        service.record(s, CLI, "test.marker", unique("target"))
    with db.engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM staff_actions")).scalar_one()
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text(statement))
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM staff_actions")).scalar_one() == before


def test_orm_cannot_edit_a_staff_action_either(db: Database) -> None:
    with db.session() as s:
        service.record(s, CLI, "test.orm", unique("target"))
    with pytest.raises(DBAPIError, match="append-only"), db.session() as s:
        row = s.scalars(select(StaffAction).order_by(StaffAction.id.desc())).first()
        assert row is not None
        row.action = "tampered"
