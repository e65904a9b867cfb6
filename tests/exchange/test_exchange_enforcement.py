"""authorize() as an access matrix (system × service × fields), expiry, revocation, modes,
quota and rate counted correctly by concurrent workers, row filters and masking on real rows."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest
from exchange_factories import (
    PERSON_ROWS,
    World,
    add_service,
    add_system,
    approved,
    fresh,
    ready,
    world,
)
from sqlalchemy import select

from core_factories import CLI
from onceonly.catalog import service as catalog
from onceonly.catalog.models import Resource
from onceonly.db import Database, utcnow
from onceonly.errors import PlatformError, ValidationFailed
from onceonly.exchange import grants
from onceonly.exchange.enforcement import (
    Charge,
    Permit,
    apply_masking,
    authorize,
    day_bucket,
    record_usage,
    row_allowed,
    row_filter_clause,
    seconds_to_midnight,
)
from onceonly.exchange.errors import (
    FieldNotGranted,
    GrantExpired,
    GrantMissing,
    GrantRevoked,
    ModeNotOffered,
    QuotaExceeded,
    RateLimited,
    ServiceUnavailable,
)
from onceonly.exchange.models import Grant, Service, System, Usage
from onceonly.store.tables import table_for


@pytest.fixture(scope="module", autouse=True)
def _ready(db: Database) -> None:
    ready(db)


@pytest.fixture
def w(db: Database) -> World:
    return world(db)


def check(db: Database, system: System, service: str, mode: str = "query", fields: list[str] | None = None,
          **kw: Any) -> Permit:
    with db.session(write=True) as s:
        return authorize(s, fresh(s, system), service, mode, fields, **kw)


def denied(db: Database, system: System, service: str, mode: str = "query", fields: list[str] | None = None,
           **kw: Any) -> PlatformError:
    with pytest.raises(PlatformError) as info:
        check(db, system, service, mode, fields, **kw)
    return info.value


def set_grant(db: Database, grant_id: int, **values: Any) -> None:
    with db.session(write=True) as s:
        grant = s.get(Grant, grant_id)
        assert grant is not None
        for name, value in values.items():
            setattr(grant, name, value)


def test_access_matrix(db: Database, w: World) -> None:
    approved(w, ["citizen_id", "name", "region"], masking={"name": "name"}, row_filter={"region": "341802"})
    approved(w, ["uscc", "company"], service=w.company_service)
    with db.session(write=True) as s:
        other, _ = add_system(s, w.consumer)
        verify = add_service(s, fresh(s, w.person), "verify", ["citizen_id", "name"])
    P, C, V = w.person_service.code, w.company_service.code, verify.code
    allowed = {
        (P, None): ("citizen_id", "name", "region"),
        (P, ("name",)): ("name",),
        (P, ("region", "citizen_id")): ("citizen_id", "region"),  # resource order
        (C, None): ("uscc", "company"),
        (C, ("company",)): ("company",),
    }
    for (service, fields), expected in allowed.items():
        permit = check(db, w.system, service, "query", list(fields) if fields else None)
        assert permit.fields == expected
    refused: list[tuple[System, str, str, list[str] | None, type[PlatformError], str | None]] = [
        (w.system, P, "query", ["phone"], FieldNotGranted, "phone"),
        (w.system, P, "query", ["name", "sex"], FieldNotGranted, "sex"),
        (w.system, P, "query", ["no_such_field"], FieldNotGranted, "no_such_field"),  # unknown = not granted
        (w.system, C, "query", ["status"], FieldNotGranted, "status"),
        (w.system, V, "verify", None, GrantMissing, None),
        (w.system, "S9999999", "query", None, GrantMissing, None),  # no such service: same answer
        (w.system, P, "verify", None, ModeNotOffered, "mode"),
        (w.system, P, "bulk", None, ModeNotOffered, "mode"),
        (w.system, P, "changes", None, ModeNotOffered, "mode"),
        (other, P, "query", None, GrantMissing, None),
        (other, C, "query", ["uscc"], GrantMissing, None),
    ]
    for system, service, mode, fields, error, field in refused:
        exc = denied(db, system, service, mode, fields)
        assert type(exc) is error, (service, mode, fields, exc)
        assert exc.status == 403 and exc.field == field
        for row in PERSON_ROWS:  # a denial carries no data
            assert not any(str(v) in exc.message for v in row.values() if len(str(v)) > 1)
    permit = check(db, w.system, P, "query", ["name"])
    assert dict(permit.masking) == {"name": "name"} and dict(permit.row_filter) == {"region": ("341802",)}
    assert permit.resource_id == w.person.id and permit.remaining_today == 1000


@pytest.mark.parametrize(("service", "mode", "fields", "field"), [
    ("'; DROP TABLE exchange_grants; --", "query", None, "service"),
    ("S" + "9" * 60, "query", None, "service"),
    ("服务", "query", None, "service"),
    ("S0001", "select", None, "mode"),
    ("S0001", "query", ["name; DROP TABLE x"], "fields"),
    ("S0001", "query", ["𠀾" * 10_000], "fields"),
])
def test_hostile_arguments_are_validation_errors(db: Database, w: World, service: str, mode: str,
                                                 fields: list[str] | None, field: str) -> None:
    exc = denied(db, w.system, service, mode, fields)
    assert isinstance(exc, ValidationFailed) and exc.status == 422 and exc.field == field


def test_feeds_ride_on_bulk(db: Database, w: World) -> None:
    with db.session(write=True) as s:
        bulk = add_service(s, fresh(s, w.company), "bulk")
    approved(w, ["uscc"], service=bulk)
    for mode in ("bulk", "changes", "subscription"):
        assert check(db, w.system, bulk.code, mode).mode == mode
    assert isinstance(denied(db, w.system, bulk.code, "query"), ModeNotOffered)


def test_expiry_revocation_and_retirement(db: Database, w: World) -> None:
    app = approved(w, ["sex"])
    grant_id = app.grant_id
    assert grant_id is not None
    with db.session() as s:
        expires = s.get(Grant, grant_id).expires_at  # type: ignore[union-attr]
    assert expires == grants.end_of_day(app.expires_on)
    code = w.person_service.code
    assert check(db, w.system, code, now=expires - timedelta(seconds=1)).fields == ("sex",)
    exc = denied(db, w.system, code, now=expires)
    assert isinstance(exc, GrantExpired) and "expired" in exc.message
    set_grant(db, grant_id, revoked_at=utcnow(), revoke_reason="内部原因：不应外泄")
    exc = denied(db, w.system, code)
    assert isinstance(exc, GrantRevoked) and isinstance(exc, GrantMissing) and "内部原因" not in exc.message
    approved(w, ["sex"])  # a new grant
    assert check(db, w.system, code).fields == ("sex",)
    with db.session(write=True) as s:
        fresh(s, w.person_service).status = "retired"
    assert isinstance(denied(db, w.system, code), ServiceUnavailable)


def test_a_new_resource_version_is_followed(db: Database, w: World) -> None:
    approved(w, ["sex", "region"], service=w.person_service)
    with db.session(write=True) as s:
        res = fresh(s, w.person)
        spec = catalog.spec_of(res)
        spec.fields = [f for f in spec.fields if f.name != "sex"]
        draft = catalog.new_version(s, CLI, res, spec)
        catalog.publish_resource(s, CLI, draft)
        new_id = draft.id
    permit = check(db, w.system, w.person_service.code)
    assert permit.resource_id == new_id and permit.fields == ("region",)
    assert isinstance(denied(db, w.system, w.person_service.code, fields=["sex"]), FieldNotGranted)


def test_quota(db: Database, w: World) -> None:
    app = approved(w, ["sex"], daily_quota=5)
    code = w.person_service.code
    with db.session(write=True) as s:
        permit = authorize(s, fresh(s, w.system), code, "query")
        assert permit.remaining_today == 5
        assert record_usage(s, permit, 3) == 3
    with db.session(write=True) as s:
        permit = authorize(s, fresh(s, w.system), code, "query")
        assert permit.used_today == 3 and permit.remaining_today == 2
    with pytest.raises(QuotaExceeded) as info, db.session(write=True) as s:
        record_usage(s, permit, 3)  # would pass the quota: the transaction is dropped
    assert info.value.status == 429 and "2 left" in info.value.message
    assert 0 < info.value.retry_after <= 24 * 3600
    with db.session(write=True) as s:
        record_usage(s, permit, 2)
    exc = denied(db, w.system, code)
    assert isinstance(exc, QuotaExceeded) and exc.retry_after == pytest.approx(seconds_to_midnight(utcnow()), abs=5)
    assert exc.problem()["retry_after"] == exc.retry_after
    # tomorrow (in the city) the quota is fresh
    assert check(db, w.system, code, now=utcnow() + timedelta(days=1)).used_today == 0
    with db.session() as s:
        out = grants.grant_out(s, s.get(Grant, app.grant_id))  # type: ignore[arg-type]
    assert out.used_today == 5


def test_rate_limit(db: Database, w: World) -> None:
    approved(w, ["sex"], rate_limit=3)
    code = w.person_service.code
    minute = utcnow().replace(second=10, microsecond=0) + timedelta(minutes=5)
    for _ in range(3):
        check(db, w.system, code, now=minute)
    exc = denied(db, w.system, code, now=minute + timedelta(seconds=20))
    assert isinstance(exc, RateLimited) and exc.status == 429 and exc.retry_after == 30
    assert exc.headers == {"Retry-After": "30"}
    # denied calls do not count; the next minute starts afresh
    check(db, w.system, code, now=minute + timedelta(seconds=60))


def _workers(db: Database, system: System, code: str, n: int, now: Any, records: int = 1) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    lock, start = threading.Lock(), threading.Barrier(n)

    def work() -> None:
        start.wait()
        try:
            with db.session(write=True) as s:
                permit = authorize(s, s.get(System, system.id), code, "query", now=now)  # type: ignore[arg-type]
                record_usage(s, permit, records, now=now)
            result = "ok"
        except PlatformError as exc:
            result = type(exc).__name__
        with lock:
            outcomes[result] += 1

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_rate_limit_holds_across_concurrent_workers(db: Database, w: World) -> None:
    approved(w, ["sex"], rate_limit=5, daily_quota=10_000)
    now = utcnow().replace(second=5) + timedelta(minutes=10)
    outcomes = _workers(db, w.system, w.person_service.code, 12, now)
    assert outcomes == Counter({"ok": 5, "RateLimited": 7})


def test_quota_holds_across_concurrent_workers(db: Database, w: World) -> None:
    app = approved(w, ["sex"], rate_limit=1000, daily_quota=10)
    outcomes = _workers(db, w.system, w.person_service.code, 14, utcnow(), records=1)
    assert outcomes == Counter({"ok": 10, "QuotaExceeded": 4})
    with db.session() as s:
        assert grants.grant_out(s, s.get(Grant, app.grant_id)).used_today == 10  # type: ignore[arg-type]


def test_row_filter_and_masking_on_real_rows(db: Database, w: World) -> None:
    approved(w, ["citizen_id", "name", "phone", "region"], masking={"name": "name", "citizen_id": "citizen_id",
                                                                     "phone": "mobile"},
             row_filter={"region": ["341802"], "household": [1, 3, 99]})
    permit = check(db, w.system, w.person_service.code, fields=["citizen_id", "name", "phone"])
    with db.session() as s:
        res = s.get(Resource, permit.resource_id)
        assert res is not None
        table = table_for(res)
        rows = [dict(r) for r in s.connection().execute(
            select(table).where(row_filter_clause(permit, table)).order_by(table.c.household)).mappings()]
    assert [r["household"] for r in rows] == [1, 3]
    assert all(row_allowed(permit, r) for r in rows)
    assert not row_allowed(permit, PERSON_ROWS[1])
    out = [apply_masking(permit, r) for r in rows]
    assert out == [
        {"citizen_id": "110105********002X", "name": "张*明", "phone": "138****5678"},
        {"citizen_id": "110105********0035", "name": "王*", "phone": "137****2222"},
    ]
    sql = str(row_filter_clause(permit, table).compile())
    assert "341802" not in sql and ":" in sql  # values are bound parameters, never spliced


def test_no_filter_is_true(db: Database, w: World) -> None:
    approved(w, ["uscc"], service=w.company_service)
    permit = check(db, w.system, w.company_service.code)
    with db.session() as s:
        service = s.scalar(select(Service).where(Service.code == permit.service_code))
        assert service is not None
        table = table_for(fresh(s, service.resource))
    assert str(row_filter_clause(permit, table).compile()) == "true"
    assert row_allowed(permit, {}) and apply_masking(permit, {"uscc": "X", "company": "不给"}) == {"uscc": "X"}


def _usage(db: Database, grant_id: int) -> dict[str, list[tuple[int, int]]]:
    """The grant's counters: (calls, records) per period, in bucket order."""
    with db.session() as s:
        rows = s.execute(select(Usage.period, Usage.calls, Usage.records).where(Usage.grant_id == grant_id)
                         .order_by(Usage.period, Usage.bucket)).all()
    out: dict[str, list[tuple[int, int]]] = {}
    for period, calls, records in rows:
        out.setdefault(period, []).append((calls, records))
    return out


def test_a_group_of_charges_is_admitted_in_order(db: Database, w: World) -> None:
    """The audit writer counts a group of calls at once (Charge.settle): each counter row is
    upserted once, the calls are admitted in the order they came, and a denied call leaves no
    count behind — the rate limit first, then the quota (used up: not even an empty answer)."""
    app = approved(w, ["sex"], rate_limit=3, daily_quota=6)
    now = utcnow().replace(second=5, microsecond=0) + timedelta(minutes=20)
    if day_bucket(now + timedelta(minutes=1)) != day_bucket(now):  # the new minute below stays on the same day
        now += timedelta(minutes=2)

    def settle(records: list[int], at: Any = now) -> list[Charge]:
        with db.session() as s:
            permit = authorize(s, fresh(s, w.system), w.person_service.code, "query", now=now, count=False)
        charges = [Charge(permit, n, at) for n in records]
        with db.engine.begin() as conn:
            Charge.settle(conn, charges)
        return charges

    def outcome(charges: list[Charge]) -> list[str]:
        return [type(c.denial).__name__ if c.denial else "ok" for c in charges]

    charges = settle([4, 3, 2, 0])
    assert outcome(charges) == ["ok", "QuotaExceeded", "ok", "QuotaExceeded"]
    assert [c.total for c in charges] == [4, 0, 6, 0]
    assert "2 left" in str(charges[1].denial and charges[1].denial.message)
    assert "used up" in str(charges[3].denial and charges[3].denial.message)
    assert _usage(db, app.grant_id) == {"minute": [(2, 0)], "day": [(2, 6)]}  # type: ignore[arg-type]

    app = approved(w, ["sex"], rate_limit=2, daily_quota=100)  # a new grant, counted afresh
    assert outcome(settle([0, 1, 0])) == ["ok", "ok", "RateLimited"]
    assert outcome(settle([0])) == ["RateLimited"]  # the next group sees what the last one left
    assert outcome(settle([1], now + timedelta(minutes=1))) == ["ok"]  # a new minute
    assert _usage(db, app.grant_id) == {"minute": [(2, 0), (1, 0)], "day": [(3, 2)]}  # type: ignore[arg-type]
