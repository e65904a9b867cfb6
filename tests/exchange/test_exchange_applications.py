"""Services and applications: automatic approval, the provider's review (approve, narrow,
reject), the operator's step for personal fields, withdrawal, grants made on final approval,
and the organization boundaries of every step."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from exchange_factories import (
    World,
    add_service,
    add_system,
    application_in,
    approved,
    company_resource,
    decision,
    fresh,
    ready,
    world,
)
from sqlalchemy import select

from core_factories import CLI, add_org, add_user, published, unique
from onceonly.audit.models import AuditRecord
from onceonly.db import Database
from onceonly.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from onceonly.exchange import applications, grants, services
from onceonly.exchange.models import Application, Grant
from onceonly.exchange.schemas import ServiceIn


@pytest.fixture(scope="module", autouse=True)
def _ready(db: Database) -> None:
    ready(db)


@pytest.fixture
def w(db: Database) -> World:
    return world(db)


def apply(w: World, fields: list[str], service: str = "person", **extra: object) -> Application:
    with w.db.session(write=True) as s:
        system = fresh(s, w.system)
        svc = fresh(s, w.person_service if service == "person" else w.company_service)
        return applications.apply(s, w.consumer_steward, system, svc, application_in(system, svc, fields, **extra))


def decide(w: World, app_id: int, actor: object, choice: str = "approve", **extra: object) -> Application:
    with w.db.session(write=True) as s:
        app = applications.get_application(s, actor, app_id, for_update=True)  # type: ignore[arg-type]
        app = applications.decide(s, actor, app, decision(choice, **extra))  # type: ignore[arg-type]
        s.flush()
        return app


def grant_of(db: Database, app_id: int) -> Grant:
    with db.session() as s:
        app = s.get(Application, app_id)
        assert app is not None and app.grant_id is not None
        grant = s.get(Grant, app.grant_id)
        assert grant is not None
        return grant


# -- services ----------------------------------------------------------------------------------

def test_publish_service_rules(db: Database) -> None:
    with db.session(write=True) as s:
        org, other = add_org(s), add_org(s)
        res = company_resource(s, org)
        steward, foreign = add_user(s, "steward", org)[1], add_user(s, "steward", other)[1]
        service = add_service(s, res, "verify", ["uscc", "company"], actor=steward)
        assert service.code.startswith("S") and service.status == "published"
        assert service.fields == ["uscc", "company"] and service.provider_org_id == org.id
        with pytest.raises(PermissionDenied):
            add_service(s, res, "query", actor=foreign)
        cases = [
            ({"mode": "query", "fields": ["nope"]}, "fields"),
            ({"mode": "query", "fields": ["uscc", "uscc"]}, "fields"),
            ({"mode": "query", "fields": ["uscc"], "code": "verify"}, "code"),
            ({"mode": "query", "fields": ["uscc"], "code": service.code}, "code"),
        ]
        for extra, field in cases:
            with pytest.raises((ValidationFailed, Conflict)) as info:
                services.publish_service(s, steward, ServiceIn.model_validate(
                    {"resource": str(res.id), "name": "x", **extra}))
            assert info.value.field == field
        closed = published(s, org, name=unique("closed"), share_type="none")
        with pytest.raises(ValidationFailed) as info:
            add_service(s, closed)
        assert info.value.field == "resource" and "不予共享" in info.value.message
        limited = published(s, org, name=unique("lim"), share_modes=["verify"])
        with pytest.raises(ValidationFailed) as info:
            add_service(s, limited, "bulk")
        assert info.value.field == "mode"
        retired = services.set_status(s, steward, service, "retired")
        assert retired.status == "retired"
        with pytest.raises(Conflict):
            services.set_status(s, steward, service, "published")


def test_service_out_lists_fields_with_titles_types_and_code_lists(w: World) -> None:
    with w.db.session() as s:
        out = services.service_out(s, fresh(s, w.person_service))
    by_name = {f.name: f for f in out.fields}
    assert by_name["sex"].title == "性别" and by_name["sex"].type == "string"
    assert by_name["sex"].code_list is not None and by_name["sex"].code_list.code == "GB/T 2261.1"
    assert by_name["citizen_id"].sensitivity == "sensitive" and by_name["household"].type == "integer"
    assert out.share_type == "conditional" and out.mode_label == "检索查询"


# -- application flows -------------------------------------------------------------------------

def test_unconditional_non_personal_is_approved_at_once(w: World) -> None:
    app = apply(w, ["uscc", "company"], service="company")
    assert app.status == "approved" and app.fields_approved == ["uscc", "company"]
    assert [(d.step, d.outcome, d.username) for d in app.decisions] == [("auto", "approve", "auto")]
    grant = grant_of(w.db, app.id)
    assert grant.fields == ["uscc", "company"] and grant.rate_limit == grants.DEFAULT_RATE_LIMIT
    assert grant.daily_quota == 1000  # the expected volume
    assert grant.expires_at == grants.end_of_day(app.expires_on)


def test_unconditional_with_personal_fields_needs_provider_and_operator(db: Database) -> None:
    w = world(db, person_share="unconditional")
    app = apply(w, ["region", "name"])
    assert app.status == "pending_provider" and app.needs_operator
    app = decide(w, app.id, w.provider_reviewer)
    assert app.status == "pending_operator" and app.grant_id is None
    app = decide(w, app.id, w.operator)
    assert app.status == "approved" and app.grant_id is not None


def test_conditional_non_personal_needs_only_the_provider(w: World) -> None:
    app = apply(w, ["sex", "region"])
    assert app.status == "pending_provider" and not app.needs_operator
    app = decide(w, app.id, w.provider_admin, rate_limit=10, daily_quota=50, row_filter={"region": "341802"})
    assert app.status == "approved"
    grant = grant_of(w.db, app.id)
    assert (grant.rate_limit, grant.daily_quota, grant.row_filter) == (10, 50, {"region": ["341802"]})


def test_sensitive_fields_need_the_operator_too(w: World) -> None:
    app = apply(w, ["citizen_id", "name", "region"])
    app = decide(w, app.id, w.provider_reviewer, masking={"name": "name"})
    assert app.status == "pending_operator"
    with pytest.raises(PermissionDenied):  # the provider cannot take the operator's step
        decide(w, app.id, w.provider_admin)
    app = decide(w, app.id, w.operator, daily_quota=20)
    assert app.status == "approved"
    assert [(d.step, d.outcome, d.username) for d in app.decisions] == [
        ("provider", "approve", w.provider_reviewer.username), ("operator", "approve", w.operator.username)]
    grant = grant_of(w.db, app.id)
    # masking set explicitly replaces the defaults from the fields' checks
    assert grant.masking == {"name": "name"} and grant.daily_quota == 20


def test_default_masking_from_field_checks(w: World) -> None:
    app = approved(w, ["citizen_id", "phone", "name"])
    assert grant_of(w.db, app.id).masking == {"citizen_id": "citizen_id", "phone": "mobile"}


def test_reviewer_narrows_and_the_operator_step_may_fall_away(w: World) -> None:
    app = apply(w, ["name", "phone", "region"])
    assert app.needs_operator
    app = decide(w, app.id, w.provider_reviewer, fields=["region"], reason="姓名和电话不在共享范围内")
    assert app.status == "approved" and app.fields_approved == ["region"] and not app.needs_operator
    assert app.decisions[-1].outcome == "narrow" and app.decisions[-1].reason.startswith("姓名")
    assert grant_of(w.db, app.id).fields == ["region"]


def test_operator_may_narrow_further_but_not_widen(w: World) -> None:
    app = apply(w, ["citizen_id", "name", "region"])
    app = decide(w, app.id, w.provider_reviewer, fields=["citizen_id", "region"], masking={"citizen_id": "redact"})
    with pytest.raises(ValidationFailed) as info:
        decide(w, app.id, w.operator, fields=["name"])
    assert info.value.field == "fields"
    app = decide(w, app.id, w.operator, fields=["region"])
    assert app.status == "approved" and app.fields_approved == ["region"]
    assert grant_of(w.db, app.id).masking == {}  # the dropped field's masking went with it


def test_reject_needs_a_reason(w: World) -> None:
    app = apply(w, ["sex"])
    with pytest.raises(ValidationFailed) as info:
        decide(w, app.id, w.provider_reviewer, "reject", reason="   ")
    assert info.value.field == "reason"
    app = decide(w, app.id, w.provider_reviewer, "reject", reason="用途与依据不符")
    assert app.status == "rejected" and app.grant_id is None and app.decisions[-1].reason == "用途与依据不符"
    with pytest.raises(Conflict):
        decide(w, app.id, w.provider_reviewer)


def test_operator_can_reject(w: World) -> None:
    app = apply(w, ["citizen_id"])
    decide(w, app.id, w.provider_reviewer)
    app = decide(w, app.id, w.operator, "reject", reason="缺少法定依据")
    assert app.status == "rejected" and [d.step for d in app.decisions] == ["provider", "operator"]


def test_withdraw_and_one_pending_application_per_pair(w: World) -> None:
    app = apply(w, ["sex"])
    with pytest.raises(Conflict) as info:
        apply(w, ["region"])
    assert info.value.field == "service"
    with w.db.session(write=True) as s:
        stored = applications.get_application(s, w.consumer_steward, app.id)
        with pytest.raises(PermissionDenied):
            applications.withdraw(s, w.provider_reviewer, stored)
        applications.withdraw(s, w.consumer_admin, stored, "不再需要")
        assert stored.status == "withdrawn"
    apply(w, ["region"])  # a new one is fine now


def test_a_new_grant_supersedes_the_old(w: World) -> None:
    first = approved(w, ["sex"])
    second = approved(w, ["sex", "region"])
    old, new = grant_of(w.db, first.id), grant_of(w.db, second.id)
    assert old.revoked_at is not None and "superseded" in (old.revoke_reason or "")
    assert new.revoked_at is None and new.fields == ["sex", "region"]


def test_application_input_rules(w: World) -> None:
    cases = [
        ({"fields": ["nope"]}, "fields"),
        ({"fields": ["sex", "sex"]}, "fields"),
        ({"expires_on": date.today() - timedelta(days=1)}, "expires_on"),
        ({"expires_on": date.today() + timedelta(days=4 * 365)}, "expires_on"),
    ]
    for extra, field in cases:
        fields = extra.pop("fields", ["sex"])
        with pytest.raises(ValidationFailed) as info:
            apply(w, fields, **extra)  # type: ignore[arg-type]
        assert info.value.field == field


def test_bad_terms_are_refused_with_the_field_named(w: World) -> None:
    cases = [
        ({"row_filter": {"note": "甲"}}, "row_filter.note"),  # not indexed
        ({"row_filter": {"household": "1"}}, "row_filter.household"),  # wrong type
        ({"row_filter": {"region": []}}, "row_filter.region"),
        ({"row_filter": {"household": 2**70}}, "row_filter.household"),
        ({"row_filter": {"region": True}}, "row_filter.region"),
        ({"row_filter": {"nope": "1"}}, "row_filter.nope"),
        ({"masking": {"sex": "nope"}}, "masking.sex"),
        ({"masking": {"name": "name"}}, "masking.name"),  # not a granted field
    ]
    app = apply(w, ["sex", "region"])
    for terms, field in cases:
        with pytest.raises(ValidationFailed) as info:
            decide(w, app.id, w.provider_reviewer, **terms)
        assert info.value.field == field
    assert decide(w, app.id, w.provider_reviewer, row_filter={"household": [1, 2]}).status == "approved"


def test_stale_application_cannot_be_approved(w: World) -> None:
    app = apply(w, ["sex"])
    with w.db.session(write=True) as s:
        s.get(Application, app.id).expires_on = grants.city_today()  # type: ignore[union-attr]
    with pytest.raises(Conflict) as info:
        decide(w, app.id, w.provider_reviewer)
    assert info.value.field == "expires_on"


def test_every_decision_is_audited(w: World) -> None:
    app = apply(w, ["citizen_id"])
    decide(w, app.id, w.provider_reviewer)
    decide(w, app.id, w.operator)
    with w.db.session() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.target.in_(
            [f"application:{app.id}", f"grant:{app.grant_id if app.grant_id else 0}"]))).all()
        actions = [(r.action, r.username) for r in rows]
        assert {r.service for r in rows} == {w.person_service.code}
    assert ("exchange.application.create", w.consumer_steward.username) in actions
    assert ("exchange.application.approve", w.provider_reviewer.username) in actions
    assert ("exchange.application.approve", w.operator.username) in actions


# -- organization boundaries -------------------------------------------------------------------

def test_cross_org_denials(db: Database, w: World) -> None:
    with db.session(write=True) as s:
        stranger_org = add_org(s)
        stranger_reviewer = add_user(s, "reviewer", stranger_org)[1]
        stranger_steward = add_user(s, "steward", stranger_org)[1]
        stranger_admin = add_user(s, "dept_admin", stranger_org)[1]
        consumer_reviewer = add_user(s, "reviewer", w.consumer)[1]
        auditor = add_user(s, "auditor")[1]
        security = add_user(s, "security_admin")[1]
    app = apply(w, ["sex"])
    # a reviewer of another org (or of the consumer) cannot review the provider's applications
    for actor in (stranger_reviewer, stranger_admin, consumer_reviewer, w.consumer_admin, w.provider_steward):
        with db.session(write=True) as s:
            stored = s.get(Application, app.id)
            assert stored is not None
            with pytest.raises(PermissionDenied):
                applications.decide(s, actor, stored, decision())
    # outsiders do not even see it
    for actor in (stranger_reviewer, stranger_steward, security):
        with db.session() as s, pytest.raises(NotFound):
            applications.get_application(s, actor, app.id)
    with db.session() as s:
        assert applications.get_application(s, auditor, app.id).id == app.id
    # a steward of another org cannot apply for this org's system, nor may a reviewer apply
    for actor in (stranger_steward, consumer_reviewer):
        with db.session(write=True) as s, pytest.raises(PermissionDenied):
            system, svc = fresh(s, w.system), fresh(s, w.company_service)
            applications.apply(s, actor, system, svc, application_in(system, svc, ["uscc"]))
    # a steward of the provider cannot publish for another org's resource
    with db.session(write=True) as s, pytest.raises(PermissionDenied):
        add_service(s, fresh(s, w.person), actor=stranger_steward)
    # the provider's reviewer is not the operator
    decide(w, app.id, w.provider_reviewer, "reject", reason="x")
    app2 = apply(w, ["citizen_id"])
    decide(w, app2.id, w.provider_reviewer)
    with db.session(write=True) as s, pytest.raises(PermissionDenied):
        applications.decide(s, w.provider_admin, s.get(Application, app2.id), decision())  # type: ignore[arg-type]


def test_queues_and_lists_are_scoped(db: Database, w: World) -> None:
    pending = apply(w, ["sex"])
    with db.session(write=True) as s:
        other = add_org(s)
        stranger = add_user(s, "reviewer", other)[1]
        system2, _ = add_system(s, w.consumer)
        svc = fresh(s, w.person_service)
        sensitive = applications.apply(s, w.consumer_steward, system2, svc, application_in(system2, svc, ["name"]))
        applications.decide(s, w.provider_reviewer, sensitive, decision())
    with db.session() as s:
        review, _ = applications.list_applications(s, w.provider_reviewer, view="review")
        assert pending.id in {a.id for a in review} and sensitive.id not in {a.id for a in review}
        operate, _ = applications.list_applications(s, w.operator, view="operate")
        assert sensitive.id in {a.id for a in operate}
        mine, _ = applications.list_applications(s, w.consumer_steward, view="mine")
        assert {pending.id, sensitive.id} <= {a.id for a in mine}
        provider_all, _ = applications.list_applications(s, w.provider_steward)
        assert {pending.id, sensitive.id} <= {a.id for a in provider_all}
        assert applications.list_applications(s, stranger)[1] == 0
        with pytest.raises(PermissionDenied):
            applications.list_applications(s, w.consumer_steward, view="review")
        with pytest.raises(PermissionDenied):
            applications.list_applications(s, w.provider_reviewer, view="operate")


def test_grant_revocation_rights(db: Database, w: World) -> None:
    with db.session(write=True) as s:
        stranger = add_user(s, "dept_admin", add_org(s))[1]
    for actor in (w.provider_reviewer, w.operator, w.consumer_steward):
        app = approved(w, ["sex"])
        with db.session(write=True) as s:
            grant = grants.get_grant(s, actor, app.grant_id)  # type: ignore[arg-type]
            with pytest.raises(ValidationFailed):
                grants.revoke_grant(s, actor, grant, " ")
            grants.revoke_grant(s, actor, grant, "不再需要")
            with pytest.raises(Conflict):
                grants.revoke_grant(s, actor, grant, "again")
    app = approved(w, ["sex"])
    with db.session(write=True) as s:
        with pytest.raises(NotFound):
            grants.get_grant(s, stranger, app.grant_id)  # type: ignore[arg-type]
        with pytest.raises(PermissionDenied):
            grants.revoke_grant(s, stranger, s.get(Grant, app.grant_id), "x")  # type: ignore[arg-type]
        with pytest.raises(PermissionDenied):
            grants.revoke_grant(s, w.provider_steward, s.get(Grant, app.grant_id), "x")  # type: ignore[arg-type]


def test_retired_service_takes_no_applications(w: World) -> None:
    with w.db.session(write=True) as s:
        services.set_status(s, CLI, fresh(s, w.company_service), "retired")
    with pytest.raises(Conflict) as info:
        apply(w, ["uscc"], service="company")
    assert info.value.field == "service"
