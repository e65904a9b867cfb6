"""The statistics API over HTTP (who may read, scoping, parameters named in problem+json) and the
exchange call metrics on /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

import exchange_factories  # noqa: F401  (puts tests/api on sys.path for core_api)
import pytest
from core_api import Api, assert_problem, make_api
from exchange_factories import World, world

from onceonly.audit import append_call
from onceonly.db import Database
from onceonly.exchange import metrics
from onceonly.exchange.grants import city_today

STATS = "/api/v1/exchange/stats"


@pytest.fixture(scope="module")
def api(db: Database) -> Iterator[Api]:
    api = make_api(db)
    yield api
    api.client.close()


@pytest.fixture(scope="module")
def w(api: Api) -> World:
    w = world(api.db)
    for status, latency in ((200, 10), (200, 30), (403, 20)):
        append_call(api.db, system=w.system.code, org=w.consumer.code, service=w.person_service.code, mode="query",
                    status=status, records=4 if status == 200 else 0, nbytes=400, latency_ms=latency)
    return w


def test_a_department_reads_its_figures(api: Api, w: World) -> None:
    headers = api.auth("steward", w.consumer.code)
    body = api.client.get(STATS, params={"group": "service"}, headers=headers).json()
    assert body["scope"] == w.consumer.code and body["group"] == "service"
    assert body["from"] == (city_today() - timedelta(days=29)).isoformat() and body["to"] == city_today().isoformat()
    assert body["timezone"] == "Asia/Shanghai"
    [row] = body["rows"]
    assert row["key"] == w.person_service.code and row["org"] == w.provider.code
    assert (row["calls"], row["ok"], row["failed"], row["records"], row["bytes"]) == (3, 2, 1, 8, 1200)
    assert (row["p50_ms"], row["p95_ms"], row["avg_ms"]) == (20, 30, 20.0)
    days = api.client.get(STATS, params={"group": "day", "from": city_today().isoformat()}, headers=headers).json()
    assert [(r["key"], r["calls"]) for r in days["rows"]] == [(city_today().isoformat(), 3)]
    other = api.client.get(STATS, headers=api.auth("steward")).json()  # a department of its own
    assert other["rows"] == [] and other["total"]["calls"] == 0


def test_summary(api: Api, w: World) -> None:
    mine = api.client.get(f"{STATS}/summary", headers=api.auth("reviewer", w.provider.code)).json()
    assert (mine["calls"], mine["ok"], mine["failed"], mine["records_exchanged"]) == (3, 2, 1, 8)
    assert mine["scope"] == w.provider.code
    city = api.client.get(f"{STATS}/summary", headers=api.auth("auditor")).json()
    assert city["scope"] is None and city["calls"] >= 3 and city["services_offered"] >= 2
    assert city["departments_connected"] >= 1


def test_who_may_read(api: Api) -> None:
    assert_problem(api.client.get(STATS), 401)
    assert_problem(api.client.get(STATS, headers=api.auth("security_admin")), 403)
    assert api.client.get(STATS, headers=api.auth("platform_admin")).status_code == 200


@pytest.mark.parametrize(("params", "field"), [
    ({"group": "weekday"}, "group"),
    ({"from": "2026-02-30"}, "from"),
    ({"to": "yesterday"}, "to"),
    ({"from": "2026-03-02", "to": "2026-03-01"}, "to"),
    ({"from": "2024-01-01", "to": "2026-01-01"}, "from"),
    ({"limit": "0"}, "limit"),
    ({"limit": "100000"}, "limit"),
    ({"from": "0001-01-01"}, "from"),
    ({"to": "9999-12-31"}, "to"),
])
def test_bad_parameters_are_named(api: Api, params: dict[str, str], field: str) -> None:
    assert_problem(api.client.get(STATS, params=params, headers=api.auth()), 422, field)


def test_summary_range(api: Api, w: World) -> None:
    past = (date(1999, 1, 1)).isoformat()
    body = api.client.get(f"{STATS}/summary", params={"from": past, "to": past}, headers=api.auth()).json()
    assert (body["from"], body["to"], body["calls"]) == (past, past, 0)


def test_openapi_lists_the_routes(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert "422" in paths[STATS]["get"]["responses"] and f"{STATS}/summary" in paths


def sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_calls_by_service_mode_and_status_class(api: Api) -> None:
    before = api.client.get("/metrics").text
    metrics.observe_call("S4242", "verify", 200, 3, 512, 12)
    metrics.observe_call("S4242", "verify", 429, 0, 90, 1)
    metrics.observe_call("S4242", "changes", 503, 0, 0, 2500)
    metrics.observe_call("'; DROP", "nonsense", 200, 1, 1, 1)
    after = api.client.get("/metrics").text

    def delta(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    calls = "onceonly_exchange_calls_total"
    assert delta(calls, service="S4242", mode="verify", status_class="2xx") == 1
    assert delta(calls, service="S4242", mode="verify", status_class="4xx") == 1
    assert delta(calls, service="S4242", mode="changes", status_class="5xx") == 1
    assert delta(calls, service="invalid", mode="other", status_class="2xx") == 1
    assert delta("onceonly_exchange_records_total", service="S4242", mode="verify") == 3
    assert delta("onceonly_exchange_response_bytes_total", service="S4242", mode="verify") == 602
    assert delta("onceonly_exchange_call_seconds_count", service="S4242", mode="changes") == 1
    assert delta("onceonly_exchange_call_seconds_bucket", service="S4242", mode="changes", le="2.5") == 1
    assert delta("onceonly_exchange_call_seconds_bucket", service="S4242", mode="changes", le="1.0") == 0
    assert "onceonly_http_requests_total" in after  # the HTTP metrics are still there


def test_metric_labels_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "MAX_SERVICE_LABELS", 0)
    monkeypatch.setattr(metrics, "_seen", set())
    assert metrics._service_label("S0001") == "other"
    assert metrics.status_class(99) == "other" and metrics.status_class(404) == "4xx"
