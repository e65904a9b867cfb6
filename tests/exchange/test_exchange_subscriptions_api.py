"""The subscription API over HTTP on each backend: a consumer system registers and manages its
webhooks with its API key, both sides see deliveries and dead letters, the provider replays;
bad input and the SSRF guard get clear 4xx; every consumer call is audited; the server's
lifespan runs the delivery worker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import exchange_factories  # noqa: F401  (puts tests/api on sys.path for core_api)
import pytest
from core_api import Api, assert_problem
from exchange_factories import add_system, approved, fresh
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_exchange_subscriptions import CONFIG, Clock, bulk, only_this_tests_subscriptions, person, write  # noqa: F401
from test_exchange_subscriptions_receiver import Receiver, serving

from core_factories import CLI
from onceonly.app import create_app
from onceonly.audit.models import AuditRecord
from onceonly.db import Database
from onceonly.errors import ValidationFailed
from onceonly.exchange import credentials
from onceonly.exchange.subscriptions import check_url, is_public
from onceonly.exchange.webhooks import DeliveryWorker, start_delivery
from onceonly.ops.setup import initialize

BASE = "/api/v1/exchange/subscriptions"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as r:
        yield r


@pytest.fixture(scope="module")
def api(db: Database) -> Iterator[Api]:
    initialize(db)
    settings = db.settings.model_copy(update={"exchange_webhook_allow_private": True})  # the receiver is local
    api = Api(db=db, client=TestClient(create_app(settings, db)))
    yield api
    api.client.close()


def key(w: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {w.key}"}


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def create(api: Api, w: Any, body: dict[str, Any]) -> Any:
    return api.client.post(BASE, json=body, headers=key(w))


def calls(db: Database, system: str) -> list[tuple[str, int]]:
    with db.session() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.system == system, AuditRecord.mode == "subscription")
                         .order_by(AuditRecord.seq))
        return [(r.detail.get("action"), r.status or 0) for r in rows]


def deliverer(api: Api, clock: Clock | None = None, **config: Any) -> DeliveryWorker:
    app: Any = api.client.app
    return DeliveryWorker(api.db, master=app.state.secret, config=replace(CONFIG, **config), rand=lambda: 1.0,
                          clock=clock or Clock())


def test_consumer_registers_and_manages_its_subscription(api: Api, receiver: Receiver) -> None:
    w, service, _ = bulk(api.db, ["citizen_id", "region"])
    created = ok(create(api, w, {"service": service.code, "url": receiver.url}), 201)
    sub_id = created["id"]
    assert created["secret"].startswith("ows_") and created["secret_hint"] == created["secret"][-4:]
    assert (created["status"], created["cursor"], created["latest_seq"], created["backlog"]) == ("active", 3, 3, 0)
    assert (created["system"], created["service"], created["provider_org"]) == (w.system.code, service.code,
                                                                                 w.provider.code)
    shown = ok(api.client.get(f"{BASE}/{sub_id}", headers=key(w)))
    assert "secret" not in shown and shown["url"] == receiver.url
    write(api.db, w.person, [person(101)])
    listed = ok(api.client.get(BASE, headers=key(w)))
    assert [s["id"] for s in listed["items"]] == [sub_id] and listed["items"][0]["backlog"] == 1

    assert ok(api.client.post(f"{BASE}/{sub_id}/pause", headers=key(w)))["status"] == "paused"
    assert_problem(api.client.post(f"{BASE}/{sub_id}/pause", headers=key(w)), 409, "status")
    assert ok(api.client.post(f"{BASE}/{sub_id}/resume", headers=key(w)))["status"] == "active"
    renewed = ok(api.client.post(f"{BASE}/{sub_id}/secret", headers=key(w)))
    assert renewed["secret"] != created["secret"]
    receiver.secrets[sub_id] = renewed["secret"]
    assert_problem(api.client.post(f"{BASE}/{sub_id}/replay", headers=key(w)), 409, "status")

    out = deliverer(api).run_once()
    assert [o.status for o in out if o.subscription_id == sub_id] == ["delivered"]
    assert receiver.seqs(sub_id) == [4]  # signed with the new secret, which the receiver checked
    log = ok(api.client.get(f"{BASE}/{sub_id}/deliveries", headers=key(w)))
    assert log["total"] == 1 and log["items"][0]["status"] == "delivered" and log["items"][0]["http_status"] == 200
    assert (log["items"][0]["first_seq"], log["items"][0]["last_seq"], log["items"][0]["records"]) == (4, 4, 1)

    assert api.client.delete(f"{BASE}/{sub_id}", headers=key(w)).status_code == 204
    assert ok(api.client.get(f"{BASE}/{sub_id}", headers=key(w)))["status"] == "deleted"
    assert ok(api.client.get(BASE, headers=key(w)))["items"] == []
    assert [s["id"] for s in ok(api.client.get(BASE, params={"status": "deleted"}, headers=key(w)))["items"]] == \
        [sub_id]
    assert_problem(api.client.post(f"{BASE}/{sub_id}/resume", headers=key(w)), 409, "status")
    assert calls(api.db, w.system.code) == [
        ("create", 201), ("pause", 200), ("pause", 409), ("resume", 200), ("secret", 200), ("replay", 409),
        ("deliver", 200), ("delete", 204), ("resume", 409)]


def test_bad_input_gets_clear_4xx(api: Api, receiver: Receiver) -> None:
    w, service, _ = bulk(api.db, ["citizen_id", "region"])
    url = receiver.url

    def refused(body: dict[str, Any], status: int, field: str | None = None, kind: str | None = None) -> None:
        problem = assert_problem(create(api, w, {"service": service.code, "url": url, **body}), status, field)
        if kind:
            assert problem["type"] == f"/problems/{kind}", problem

    assert_problem(api.client.post(BASE, json={"service": service.code, "url": url}), 401)
    assert_problem(api.client.post(BASE, json={"service": service.code, "url": url}, headers=api.auth()), 401)
    for bad in ("ftp://example.org/x", "not a url", "http://user:pw@example.org/", "http://", "javascript:alert(1)",
                "http://example.org:99999/", "http://exa mple.org/", "https://example.org/#frag"):
        refused({"url": bad}, 422, "url")
    refused({"url": "http://" + "a" * 2000 + ".org/"}, 422, "url")
    refused({"url": None}, 422, "url")
    refused({"service": "S-does-not-exist"}, 403, kind="grant-missing")
    refused({"service": "'; DROP TABLE x; --"}, 422, "service")
    refused({"service": w.company_service.code}, 403, kind="grant-missing")  # no grant for it
    approved(w, ["citizen_id", "region"])  # a grant for the query service: not a feed
    refused({"service": w.person_service.code}, 403, "mode", kind="mode-not-offered")
    refused({"fields": ["phone"]}, 403, "phone", kind="field-not-granted")
    refused({"fields": ["Bad Name"]}, 422, "fields.0")
    refused({"since": 4}, 422, "since")
    refused({"since": -1}, 422, "since")

    sub_id = ok(create(api, w, {"service": service.code, "url": url}), 201)["id"]
    refused({}, 409, "url")  # the same url twice
    for n in range(4):
        ok(create(api, w, {"service": service.code, "url": f"{url}?n={n}"}), 201)
    refused({"url": f"{url}?n=9"}, 409, "service")  # at most five per service

    other = _other_system(api, w)
    assert_problem(api.client.get(f"{BASE}/{sub_id}", headers=other), 404, "subscription_id")
    assert_problem(api.client.post(f"{BASE}/{sub_id}/pause", headers=other), 404, "subscription_id")
    assert ok(api.client.get(BASE, headers=other))["items"] == []
    assert_problem(api.client.get(f"{BASE}/0", headers=key(w)), 422, "subscription_id")
    assert_problem(api.client.get(f"{BASE}/99999999999999", headers=key(w)), 422, "subscription_id")
    assert api.client.get(f"{BASE}/abc", headers=key(w)).status_code == 404
    assert_problem(api.client.get(f"{BASE}/{sub_id}/deliveries", params={"status": "x"}, headers=key(w)), 422,
                   "status")
    assert_problem(api.client.get(BASE, params={"status": "gone"}, headers=key(w)), 422, "status")
    statuses = calls(api.db, w.system.code)
    assert ("create", 403) in statuses and ("create", 422) in statuses and ("create", 409) in statuses


def _other_system(api: Api, w: Any) -> dict[str, str]:
    with api.db.session(write=True) as s:
        system, _ = add_system(s, fresh(s, w.consumer))
        _, other_key = credentials.create_key(s, CLI, system)
    return {"Authorization": f"Bearer {other_key}"}


def test_ssrf_guard(api: Api, receiver: Receiver) -> None:
    w, service, _ = bulk(api.db, ["citizen_id", "region"])
    app: Any = api.client.app
    allowing = app.state.settings
    app.state.settings = allowing.model_copy(update={"exchange_webhook_allow_private": False})
    try:
        for target in (receiver.url, "http://localhost/hook", "http://10.1.2.3/hook", "http://192.168.0.7/",
                       "http://[::1]:8080/", "http://169.254.169.254/latest/meta-data", "http://100.64.0.1/",
                       "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://224.0.0.1/"):
            problem = assert_problem(create(api, w, {"service": service.code, "url": target}), 422, "url")
            assert "loopback, private or reserved" in problem["detail"], (target, problem)
    finally:
        app.state.settings = allowing
    sub_id = ok(create(api, w, {"service": service.code, "url": receiver.url}), 201)["id"]

    public = {"hooks.example.org": ["93.184.216.34"], "sneaky.example.org": ["93.184.216.34", "10.0.0.5"]}

    def resolve(host: str, port: int) -> list[str]:
        return public[host]

    assert check_url("https://hooks.example.org/x", allow_private=False, resolve=resolve)
    with pytest.raises(ValidationFailed, match=r"resolves to 10\.0\.0\.5"):
        check_url("https://sneaky.example.org/x", allow_private=False, resolve=resolve)
    assert is_public("8.8.8.8") and not is_public("fd00::1") and not is_public("127.0.0.2")

    write(api.db, w.person, [person(111)])  # checked again at delivery: a local target is refused there too
    out = deliverer(api, allow_private=False).run_once()
    assert [o.status for o in out if o.subscription_id == sub_id] == ["failed"]
    assert receiver.seqs(sub_id) == []
    shown = ok(api.client.get(f"{BASE}/{sub_id}", headers=key(w)))
    assert "resolves to 127.0.0.1" in shown["last_error"]


def test_dead_letter_seen_by_both_sides_and_replayed_by_the_provider(api: Api, receiver: Receiver) -> None:
    w, service, _ = bulk(api.db, ["citizen_id", "region"])
    sub_id = ok(create(api, w, {"service": service.code, "url": receiver.url}), 201)["id"]
    receiver.secrets[sub_id] = ""  # the receiver knows no secret yet: it answers 401
    write(api.db, w.person, [person(121), person(122), person(123)])
    clock = Clock()
    worker = deliverer(api, max_attempts=2, clock=clock)
    worker.run_once()
    clock.advance(60)
    out = worker.run_once()
    assert [o.status for o in out if o.subscription_id == sub_id] == ["dead"]

    consumer_view = ok(api.client.get(f"{BASE}/{sub_id}", headers=key(w)))
    assert consumer_view["status"] == "dead" and consumer_view["dead_at"] and consumer_view["backlog"] == 3
    assert "dead letter after 2 failed attempts" in consumer_view["last_error"]
    assert "HTTP 401" in consumer_view["last_error"]
    log = ok(api.client.get(f"{BASE}/{sub_id}/deliveries", headers=key(w)))
    assert [d["status"] for d in log["items"]] == ["dead", "failed"] and log["items"][0]["http_status"] == 401
    assert ok(api.client.get(f"{BASE}/{sub_id}/deliveries", params={"status": "dead"}, headers=key(w)))["total"] == 1

    steward = api.auth("steward", w.provider.code)
    provider_list = ok(api.client.get(BASE, params={"status": "dead"}, headers=steward))
    assert [s["id"] for s in provider_list["items"]] == [sub_id]
    assert ok(api.client.get(f"{BASE}/{sub_id}", headers=steward))["last_error"] == consumer_view["last_error"]
    assert ok(api.client.get(f"{BASE}/{sub_id}/deliveries", headers=steward))["total"] == 2
    consumer_staff = api.auth("dept_admin", w.consumer.code)
    assert ok(api.client.get(f"{BASE}/{sub_id}", headers=consumer_staff))["status"] == "dead"
    stranger = api.auth("steward")
    assert_problem(api.client.get(f"{BASE}/{sub_id}", headers=stranger), 404, "subscription_id")
    assert sub_id not in [s["id"] for s in ok(api.client.get(BASE, headers=stranger))["items"]]
    assert ok(api.client.get(f"{BASE}/{sub_id}", headers=api.auth("auditor")))["status"] == "dead"
    assert_problem(api.client.post(f"{BASE}/{sub_id}/replay", headers=api.auth("auditor")), 403)
    assert_problem(api.client.post(f"{BASE}/{sub_id}/replay", headers=api.auth("reviewer", w.provider.code)), 403)
    assert_problem(api.client.post(f"{BASE}/{sub_id}/pause", headers=steward), 401)  # the consumer's own action

    receiver.secrets[sub_id] = _fresh_secret(api, w, sub_id)
    replayed = ok(api.client.post(f"{BASE}/{sub_id}/replay", headers=steward))
    assert (replayed["status"], replayed["attempts"], replayed["dead_at"]) == ("active", 0, None)
    with api.db.session() as s:
        staff = s.scalars(select(AuditRecord).where(AuditRecord.action == "exchange.subscription.replay",
                                                    AuditRecord.target == f"subscription:{sub_id}")).all()
        assert len(staff) == 1 and staff[0].service == service.code
    out = deliverer(api).run_once()
    assert [(o.status, o.records) for o in out if o.subscription_id == sub_id] == [("delivered", 3)]
    assert receiver.seqs(sub_id) == [4, 5, 6]
    done = ok(api.client.get(f"{BASE}/{sub_id}", headers=key(w)))
    assert (done["cursor"], done["backlog"], done["last_error"]) == (6, 0, None)


def _fresh_secret(api: Api, w: Any, sub_id: int) -> str:
    secret: str = ok(api.client.post(f"{BASE}/{sub_id}/secret", headers=key(w)))["secret"]
    return secret


def test_server_lifespan_runs_the_delivery_worker(db: Database, receiver: Receiver) -> None:
    initialize(db)
    settings = db.settings.model_copy(update={"exchange_webhook_allow_private": True,
                                              "exchange_webhook_timeout_seconds": 2})
    assert start_delivery(settings.model_copy(update={"exchange_delivery_enabled": False}), db, "x") is None
    w, service, _ = bulk(db, ["citizen_id", "region"])
    with TestClient(create_app(settings, db)) as client:
        created = client.post(BASE, json={"service": service.code, "url": receiver.url}, headers=key(w))
        assert created.status_code == 201, created.text
        receiver.secrets[created.json()["id"]] = created.json()["secret"]
        write(db, w.person, [person(131)])
        deadline = time.monotonic() + 15
        while not receiver.seqs(created.json()["id"]) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert receiver.seqs(created.json()["id"]) == [4]


def test_openapi_lists_the_routes(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert {"post", "get"} <= set(paths[BASE])
    for tail in ("", "/deliveries", "/pause", "/resume", "/replay", "/secret"):
        assert f"{BASE}/{{subscription_id}}{tail}" in paths
    assert "403" in paths[BASE]["post"]["responses"] and "422" in paths[BASE]["post"]["responses"]
