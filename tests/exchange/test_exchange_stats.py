"""Exchange statistics from known audit records, on SQLite and PostgreSQL: sums per group,
exact nearest-rank percentiles, the city's day boundary, headline figures, and department
scoping (a department sees only the calls it made or answered)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import pytest
from exchange_factories import World, add_service, add_system, approved, fresh, ready, world

from core_factories import CLI, add_org, add_user, unique
from onceonly.accounts.actor import Actor
from onceonly.audit import append_call
from onceonly.audit import service as audit_service
from onceonly.audit.writer import append_delivery
from onceonly.db import Database
from onceonly.errors import PermissionDenied, ValidationFailed
from onceonly.exchange import services as exchange_services
from onceonly.exchange import stats
from onceonly.exchange.grants import city_today
from onceonly.exchange.stats import StatRow


@pytest.fixture(scope="module", autouse=True)
def _ready(db: Database) -> None:
    ready(db)


@pytest.fixture
def w(db: Database) -> World:
    return world(db)


def at_time(db: Database, when: datetime, *calls: dict[str, object]) -> None:
    """Append call records chained at a chosen time (the audit writer stamps 'now')."""
    entries = [audit_service.entry("call", **{"mode": "query", "status": 200, **c}) for c in calls]  # type: ignore[arg-type]
    clock: Callable[[], datetime] = lambda: when  # noqa: E731
    with db.session(write=True) as s:
        audit_service.append(s.connection(), entries, clock=clock)


def call(db: Database, w: World, service: str, status: int, latency_ms: int, records: int = 0, nbytes: int = 0,
         system: str | None = None, org: str | None = None, mode: str = "query") -> None:
    append_call(db, system=system or w.system.code, org=org or w.consumer.code, service=service, mode=mode,
                status=status, records=records, nbytes=nbytes, latency_ms=latency_ms, ip="10.0.0.1")


def row(out: stats.StatsOut, key: str | None) -> StatRow:
    found = [r for r in out.rows if r.key == key]
    assert len(found) == 1, (key, out.rows)
    return found[0]


PERSON_LATENCIES = [5, 1, 9, 3, 7, 100, 2, 8, 4, 6]  # sorted: 1..9, 100 → p50 = 5 (rank 5), p95 = 100 (rank 10)
PERSON_STATUSES = [200, 200, 200, 200, 200, 200, 200, 200, 403, 429]


@pytest.fixture
def traffic(db: Database, w: World) -> World:
    """Ten calls to the person service, three to the company service, one to an unknown service
    (all by the world's consumer), and two by a third department to the company service."""
    for latency, status in zip(PERSON_LATENCIES, PERSON_STATUSES, strict=True):
        call(db, w, w.person_service.code, status, latency, records=0 if status >= 400 else 2,
             nbytes=100 if status >= 400 else 1000)
    for latency in (30, 10, 20):
        call(db, w, w.company_service.code, 200, latency, records=5, nbytes=500, mode="query")
    call(db, w, "S9999-missing", 403, 1)
    return w


def test_a_department_sees_its_own_calls_grouped_by_service(db: Database, traffic: World) -> None:
    w = traffic
    with db.session() as s:
        out = stats.stats(s, w.consumer_steward, "service")
    assert out.scope == w.consumer.code
    person = row(out, w.person_service.code)
    assert (person.calls, person.ok, person.failed) == (10, 8, 2)
    assert (person.records, person.bytes) == (16, 8200)
    assert (person.p50_ms, person.p95_ms, person.avg_ms) == (5, 100, 14.5)
    assert person.name == w.person_service.name and person.org == w.provider.code
    company = row(out, w.company_service.code)
    assert (company.calls, company.records, company.bytes, company.p50_ms, company.p95_ms) == (3, 15, 1500, 20, 30)
    unknown = row(out, "S9999-missing")
    assert (unknown.calls, unknown.failed, unknown.name, unknown.org) == (1, 1, None, None)
    assert [r.key for r in out.rows] == [w.person_service.code, w.company_service.code, "S9999-missing"]
    t = out.total
    assert (t.calls, t.ok, t.failed, t.records, t.bytes) == (14, 11, 3, 31, 9700)
    # all 14 latencies sorted: 1 1 2 3 4 5 6 7 8 9 10 20 30 100 → rank 7 = 6, rank ceil(13.3) = 14 = 100
    assert (t.p50_ms, t.p95_ms) == (6, 100)


def test_the_provider_sees_calls_to_its_services_only(db: Database, traffic: World) -> None:
    w = traffic
    with db.session(write=True) as s:
        other_system, _ = add_system(s, add_org(s))
        other_code, other_org = other_system.code, other_system.org.code
    for latency in (40, 50):
        call(db, w, w.company_service.code, 200, latency, records=1, nbytes=10, system=other_code, org=other_org)
    with db.session() as s:
        provider = stats.stats(s, w.provider_reviewer, "consumer")
        consumer = stats.stats(s, w.consumer_admin, "consumer")
        by_org = stats.stats(s, w.provider_admin, "consumer_org")
        providers = stats.stats(s, w.provider_steward, "provider")
    assert {r.key: r.calls for r in provider.rows} == {w.system.code: 13, other_code: 2}  # not the unknown service
    assert row(provider, w.system.code).org == w.consumer.code
    assert row(provider, other_code).name == "业务系统"
    assert {r.key: r.calls for r in consumer.rows} == {w.system.code: 14}  # the other consumer's calls are not ours
    assert {r.key: r.calls for r in by_org.rows} == {w.consumer.code: 13, other_org: 2}
    assert row(by_org, other_org).name  # the organization's name
    assert [(r.key, r.calls, r.name) for r in providers.rows] == [(w.provider.code, 15, w.provider.name)]
    assert providers.total.calls == 15 and (providers.total.p50_ms, providers.total.p95_ms) == (8, 100)


def test_per_mode(db: Database, w: World) -> None:
    with db.session(write=True) as s:
        verify = add_service(s, fresh(s, w.person), "verify", ["citizen_id", "name"]).code
    for latency in (3, 1, 2):
        call(db, w, verify, 200, latency, records=1, mode="verify")
    call(db, w, w.person_service.code, 200, 9, records=4)
    with db.session() as s:
        out = stats.stats(s, w.consumer_admin, "mode")
    assert (row(out, "verify").calls, row(out, "verify").p50_ms, row(out, "verify").p95_ms) == (3, 2, 3)
    assert (row(out, "query").calls, row(out, "query").records) == (1, 4)


def test_days_are_the_citys_and_percentiles_are_exact(db: Database) -> None:
    """23:59:59 in the city (15:59:59 UTC) is still that day; 16:00 UTC is the next. The range
    is whole days, both ends included; every day of it is listed."""
    svc, sys_code, org = unique("svc").replace("_", "-"), unique("sys").replace("_", "-"), "91341800MA2N0X0001"
    base = {"service": svc, "system": sys_code, "org": org}
    at_time(db, datetime(2001, 3, 1, 15, 59, 59, tzinfo=UTC),
            *[{**base, "latency_ms": ms, "records": 1, "nbytes": 10} for ms in range(1, 21)])  # 1..20
    at_time(db, datetime(2001, 3, 1, 16, 0, 0, tzinfo=UTC), {**base, "latency_ms": 7, "status": 500})
    at_time(db, datetime(2001, 2, 28, 15, 59, 59, tzinfo=UTC), {**base, "latency_ms": 99})  # 2001-02-28 city day
    with db.session() as s:
        out = stats.stats(s, CLI, "day", date(2001, 3, 1), date(2001, 3, 3))
        wide = stats.stats(s, CLI, "day", date(2001, 2, 28), date(2001, 3, 2))
    assert [r.key for r in out.rows] == ["2001-03-01", "2001-03-02", "2001-03-03"]
    first, second, third = out.rows
    assert (first.calls, first.records, first.bytes, first.failed) == (20, 20, 200, 0)
    assert (first.p50_ms, first.p95_ms) == (10, 19)  # rank 10 of 20 and rank 19 of 20
    assert (second.calls, second.failed, second.ok, second.p50_ms, second.p95_ms) == (1, 1, 0, 7, 7)
    assert (third.calls, third.p50_ms, third.avg_ms) == (0, None, None)
    # 1..7, 7, 8..20: rank 11 is 10, rank 20 is 19
    assert (out.total.calls, out.total.failed, out.total.p50_ms, out.total.p95_ms) == (21, 1, 10, 19)
    assert [r.calls for r in wide.rows] == [1, 20, 1]
    assert (wide.total.p50_ms, wide.total.p95_ms) == (10, 20)  # rank 21 of 22: 99 is the 22nd


def test_headline_figures(db: Database, w: World) -> None:
    with db.session() as s:
        before = stats.summary(s, CLI)
        published = len(exchange_services.list_services(s, status="published"))
    approved(w, ["sex", "region"])  # the consumer gets an active grant: it is connected now
    call(db, w, w.person_service.code, 200, 12, records=3, nbytes=300)
    call(db, w, w.person_service.code, 404, 4)
    with db.session() as s:
        after = stats.summary(s, CLI)
        mine = stats.summary(s, w.consumer_steward)
    assert before.services_offered == published
    assert after.departments_connected == before.departments_connected + 1  # the provider was connected already
    assert after.consumer_departments == before.consumer_departments + 1
    assert after.provider_departments == before.provider_departments
    assert after.calls == before.calls + 2 and after.records_exchanged == before.records_exchanged + 3
    assert after.active_grants == before.active_grants + 1
    assert (mine.calls, mine.ok, mine.failed, mine.records_exchanged, mine.bytes) == (2, 1, 1, 3, 300)
    assert (mine.p50_ms, mine.p95_ms, mine.active_grants, mine.scope) == (4, 12, 1, w.consumer.code)
    assert (mine.from_, mine.to) == (city_today() - timedelta(days=29), city_today())


def test_an_empty_range_has_zeros(db: Database) -> None:
    with db.session() as s:
        out = stats.stats(s, CLI, "service", date(1990, 1, 1), date(1990, 1, 31))
        top = stats.summary(s, CLI, date(1990, 1, 1), date(1990, 1, 1))
    assert out.rows == [] and out.total.calls == 0 and out.total.p95_ms is None
    assert (top.calls, top.records_exchanged, top.p50_ms) == (0, 0, None)


def test_who_may_read(db: Database, w: World) -> None:
    with db.session(write=True) as s:
        security = add_user(s, "security_admin")[1]
        auditor = add_user(s, "auditor")[1]
    with db.session() as s:
        with pytest.raises(PermissionDenied):
            stats.stats(s, security, "service")
        assert stats.stats(s, auditor, "service").scope is None
        assert stats.summary(s, w.operator).scope is None
        orphan = Actor(user_id=None, username="x", role="steward", org_id=None, via="api")
        with pytest.raises(PermissionDenied):
            stats.summary(s, orphan)


@pytest.mark.parametrize(("start", "end", "field"), [
    (date(2001, 1, 2), date(2001, 1, 1), "to"),
    (date(2000, 1, 1), date(2001, 1, 1), "from"),
])
def test_bad_ranges_name_the_parameter(db: Database, start: date, end: date, field: str) -> None:
    with db.session() as s, pytest.raises(ValidationFailed) as exc:
        stats.stats(s, CLI, "day", start, end)
    assert exc.value.field == field


def test_default_range_and_limits() -> None:
    today = date(2026, 11, 27)
    assert stats.day_range(None, None, today) == (date(2026, 10, 29), today)
    assert stats.day_range(date(2026, 11, 1), None, today) == (date(2026, 11, 1), today)
    assert stats.day_range(date(2026, 1, 1), None, today) == (date(2026, 1, 1), date(2026, 1, 30))
    assert stats.day_range(None, date(2026, 1, 30), today) == (date(2026, 1, 1), date(2026, 1, 30))
    assert stats.day_range(date(2025, 11, 28), date(2026, 11, 27), today)[0] == date(2025, 11, 28)  # 365 days
    since, until = stats.instants(date(2026, 1, 1), date(2026, 1, 1))
    assert (since, until) == (datetime(2025, 12, 31, 16, tzinfo=UTC), datetime(2026, 1, 1, 16, tzinfo=UTC))


def test_export_bytes_come_from_their_delivery_records(db: Database, w: World) -> None:
    """An export's call record has bytes 0 (written before the body); its delivery record's
    bytes count for the service, the consumer and the total — but not as a call, nor in the
    latency percentiles. A delivery whose call fell on another day still counts its bytes."""
    bulk = w.company_service.code
    call(db, w, bulk, 200, 12, records=40, nbytes=0, mode="bulk")
    fields = {"system": w.system.code, "org": w.consumer.code, "service": bulk, "mode": "bulk", "records": 40,
              "latency_ms": 9000, "ip": "10.0.0.1"}
    append_delivery(db, call_seq=1, status=200, nbytes=123_456, **fields)
    append_delivery(db, call_seq=2, status=499, nbytes=1_000, **fields)
    with db.session() as s:
        out = stats.stats(s, w.consumer_steward, "service")
        by_consumer = stats.stats(s, w.consumer_steward, "consumer")
    company = row(out, bulk)
    assert (company.calls, company.records, company.bytes, company.p50_ms, company.p95_ms) == (1, 40, 124_456, 12, 12)
    assert (out.total.calls, out.total.bytes) == (1, 124_456)
    assert row(by_consumer, w.system.code).bytes == 124_456

    yesterday = datetime.now(UTC) - timedelta(days=1)
    entries = [audit_service.entry("delivery", system=w.system.code, org=w.consumer.code, service=w.person_service.code,
                                   mode="bulk", status=200, records=3, nbytes=77, detail={"call": 1, "complete": True})]
    with db.session(write=True) as s:
        audit_service.append(s.connection(), entries, clock=lambda: yesterday)
    today, day_before = city_today(), city_today() - timedelta(days=1)
    with db.session() as s:
        days = stats.stats(s, w.consumer_steward, "day", start=day_before, end=today)
        person = stats.stats(s, w.consumer_steward, "service", start=day_before, end=today)
    assert [(r.key, r.calls, r.bytes) for r in days.rows] == [
        (day_before.isoformat(), 0, 77), (today.isoformat(), 1, 124_456)]
    assert row(person, w.person_service.code).calls == 0 and row(person, w.person_service.code).bytes == 77
    with db.session() as s:
        top = stats.stats(s, w.consumer_steward, "service", start=day_before, end=today, limit=1)
    assert [r.key for r in top.rows] == [bulk], "a delivery-only group never pushes past the limit"
