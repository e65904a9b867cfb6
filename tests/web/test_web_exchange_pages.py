"""The exchange console pages over HTTP: the service catalogue and a service's page, publishing,
applying, deciding, the audit log and the statistics dashboard — who sees what, errors shown
next to the field they concern, and the numbers and links the pages carry."""

from __future__ import annotations

import json
import re
from html import unescape

import pytest
from fastapi.testclient import TestClient
from webseed import ExchangeSeed, Seed, csrf_of, seed_exchange, sign_in

from onceonly.accounts.actor import Actor
from onceonly.audit import append_call
from onceonly.exchange import services as exchange_services
from onceonly.exchange.schemas import ServiceIn
from onceonly.web import audit_pages


@pytest.fixture(scope="module")
def ex(seed: Seed) -> ExchangeSeed:
    return seed_exchange(seed)


def login(client: TestClient, ex: ExchangeSeed, username: str) -> TestClient:
    response = sign_in(client, username, ex.passwords[username])
    assert response.status_code == 303, response.text
    return client


def main_of(html: str) -> str:
    return html.split("<main", 1)[1].split("</main>", 1)[0]


def error_of(html: str, field: str) -> str:
    match = re.search(rf'data-testid="error-{field}">(.*?)</p>', html, flags=re.S)
    assert match, f"no error shown at {field}"
    return unescape(match.group(1)).strip()


def nav_of(html: str) -> str:
    return html.split('class="mainnav"', 1)[1].split("</nav>", 1)[0]


def test_navigation_by_role(client: TestClient, seed: Seed, ex: ExchangeSeed) -> None:
    nav = nav_of(login(client, ex, "steward1").get("/").text)
    assert "共享服务" in nav and "共享申请" in nav and "交换统计" in nav and "审计日志" not in nav
    client.cookies.clear()
    nav = nav_of(login(client, ex, "auditor1").get("/").text)
    assert "审计日志" in nav and "交换统计" in nav


def test_catalogue_and_service_page(client: TestClient, ex: ExchangeSeed) -> None:
    login(client, ex, "steward2")
    listing = main_of(client.get("/exchange/services").text)
    assert ex.service_code in listing and "户籍人口信息查询" in listing and "示例市公安局" in listing
    assert "检索查询" in listing and "发布服务" in listing  # a steward may publish (its own department's)
    assert "没有符合条件的服务" in client.get("/exchange/services", params={"mode": "verify"}).text
    assert ex.service_code in client.get("/exchange/services", params={"q": "户籍"}).text
    page = client.get(f"/exchange/services/{ex.service_code}")
    body = main_of(page.text)
    for text in ("公民身份号码", "敏感个人信息", "GB/T 2261.1", "申请使用此服务", "检索查询"):
        assert text in body, text
    example = unescape(body.split('data-testid="example-records"', 1)[1].split("</pre>", 1)[0])
    assert f"/api/v1/exchange/{ex.service_code}/records" in example
    assert "Authorization: Bearer $ONCEONLY_API_KEY" in example and "ook_" not in example
    assert "<公民身份号码>" in example or "<姓名>" in example
    assert client.get("/exchange/services/S9999").status_code == 404


def test_publish_shows_errors_next_to_the_field_and_publishes_one_service_per_mode(
        client: TestClient, seed: Seed, ex: ExchangeSeed) -> None:
    login(client, ex, "steward1")
    form = client.get("/exchange/publish", params={"resource": ex.resource_id})
    assert form.status_code == 200 and "机动车登记信息" in form.text and 'data-testid="mode-verify"' in form.text
    token = csrf_of(form.text)
    base = {"csrf_token": token, "resource": str(ex.resource_id), "name": "机动车登记查询",
            "fields": ["plate", "vehicle_type"]}
    none = client.post("/exchange/publish", data=base)
    assert none.status_code == 422 and error_of(none.text, "modes") == "此项必填。"
    bad = client.post("/exchange/publish", data={**base, "modes": ["query"], "code": "9bad"})
    assert bad.status_code == 422 and error_of(bad.text, "code").startswith("code: String should match pattern")
    two = client.post("/exchange/publish", data={**base, "modes": ["query", "verify"], "code": "X1"})
    assert two.status_code == 422 and error_of(two.text, "code") == "只选择一种共享方式时才能指定服务编码。"
    ok = client.post("/exchange/publish", data={**base, "modes": ["query", "verify"]})
    assert ok.status_code == 303 and ok.headers["location"].startswith("/exchange/services?provider=")
    listing = client.get(ok.headers["location"]).text
    assert "机动车登记查询（检索查询）" in listing and "机动车登记查询（比对验证）" in listing


def test_another_department_may_not_publish(client: TestClient, ex: ExchangeSeed) -> None:
    login(client, ex, "steward2")
    page = client.get("/exchange/publish", params={"resource": ex.resource_id})
    assert page.status_code == 403
    token = csrf_of(client.get("/exchange/publish").text)
    post = client.post("/exchange/publish", data={"csrf_token": token, "resource": str(ex.resource_id),
                                                  "modes": ["query"], "fields": ["plate"], "name": "x"})
    assert post.status_code == 403


def test_apply_then_reject_needs_a_reason_then_narrow(client: TestClient, seed: Seed, ex: ExchangeSeed) -> None:
    with seed.db.session(write=True) as s:
        code = exchange_services.publish_service(s, Actor.cli(), ServiceIn(
            resource=str(ex.resource_id), mode="api", fields=["plate", "vehicle_type", "owner_name"],
            name="机动车接口")).code
    login(client, ex, "steward2")
    form = client.get(f"/exchange/services/{code}/apply")
    assert form.status_code == 200 and "市场监管业务系统" in form.text
    token = csrf_of(form.text)
    base = {"csrf_token": token, "system": ex.system_code, "purpose": "企业登记核查",
            "legal_basis": "《市场主体登记管理条例》", "expected_volume": "500", "expires_on": "2099-01-01"}
    no_fields = client.post(f"/exchange/services/{code}/apply", data=base)
    assert no_fields.status_code == 422 and "fields" in error_of(no_fields.text, "fields")
    bad_volume = client.post(f"/exchange/services/{code}/apply",
                             data={**base, "fields": ["plate"], "expected_volume": "lots"})
    assert bad_volume.status_code == 422 and error_of(bad_volume.text, "expected_volume")
    too_late = client.post(f"/exchange/services/{code}/apply", data={**base, "fields": ["plate"]})
    assert too_late.status_code == 422 and "expires_on" in error_of(too_late.text, "expires_on")
    data = {**base, "fields": ["plate", "vehicle_type", "owner_name"], "expires_on": "2027-06-30"}
    ok = client.post(f"/exchange/services/{code}/apply", data=data)
    assert ok.status_code == 303, ok.text
    app_url = ok.headers["location"]
    page = client.get(app_url).text
    assert "待提供方审核" in page and 'data-testid="decision-card"' not in page and "撤回申请" in page
    mine = client.get("/exchange/applications").text
    assert app_url in mine and "本部门的申请" in mine

    client.cookies.clear()
    login(client, ex, "reviewer1")
    queue = client.get("/exchange/applications").text
    assert 'aria-current="page" data-testid="tab-review"' in queue and app_url in queue
    page = client.get(app_url).text
    assert 'data-testid="decision-card"' in page and "提供方审核" in page
    token = csrf_of(page)
    reject = client.post(f"{app_url}/decision", data={"csrf_token": token, "decision": "reject", "reason": " "})
    assert reject.status_code == 422 and "reason" in error_of(reject.text, "reason")
    bad_rate = client.post(f"{app_url}/decision", data={"csrf_token": token, "decision": "approve",
                                                        "fields": ["plate"], "rate_limit": "0"})
    assert bad_rate.status_code == 422 and error_of(bad_rate.text, "rate_limit")
    approve = client.post(f"{app_url}/decision", data={"csrf_token": token, "decision": "approve",
                                                       "fields": ["plate", "vehicle_type"], "reason": "最小必要"})
    assert approve.status_code == 303
    page = client.get(app_url).text
    assert "已批准" in page and "批准（缩减信息项）" in page and 'data-testid="grant"' in page
    assert "最小必要" in page and 'data-testid="decision-card"' not in page


def test_audit_log_filters_pages_exports_and_verifies(client: TestClient, seed: Seed, ex: ExchangeSeed,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for status in (200, 403, 200):
        append_call(seed.db, system="audit-page-sys", org=seed.org2_code, service=ex.service_code, mode="query",
                    status=status, records=1, nbytes=10, latency_ms=5, purpose="案件2026-7")
    login(client, ex, "steward1")
    assert client.get("/audit").status_code == 403
    client.cookies.clear()
    login(client, ex, "auditor1")
    calls = client.get("/audit", params={"kind": "call", "system": "audit-page-sys"}).text
    assert calls.count('data-testid="audit-row"') == 3 and "案件2026-7" in calls
    only_403 = client.get("/audit", params={"system": "audit-page-sys", "status": "403"}).text
    assert only_403.count('data-testid="audit-row"') == 1
    export = re.search(r'href="([^"]+)" data-testid="export-csv"', calls)
    assert export
    csv = client.get(unescape(export.group(1)))
    assert csv.status_code == 200 and csv.text.count("\n") == 4 and "案件2026-7" in csv.text  # header + 3
    for params, field in (({"since": "yesterday"}, "since"), ({"status": "999"}, "status"),
                          ({"since": "2026-01-02", "until": "2026-01-01"}, "until"), ({"system": "a b"}, "system"),
                          ({"kind": "other"}, "kind"), ({"since": "0001-01-01"}, "since")):
        page = client.get("/audit", params=params)
        assert page.status_code == 422 and error_of(page.text, field), params
    day = client.get("/audit", params={"since": "2000-01-01", "until": "2000-01-01"}).text
    assert "没有符合条件的记录" in day
    monkeypatch.setattr(audit_pages, "PAGE_SIZE", 2)
    first = client.get("/audit", params={"kind": "call"}).text
    seqs = re.findall(r'data-seq="(\d+)"', first)
    nxt = re.search(r'href="([^"]+)" rel="next"', first)
    assert len(seqs) == 2 and nxt
    second = client.get(unescape(nxt.group(1))).text
    assert int(re.findall(r'data-seq="(\d+)"', second)[0]) > int(seqs[-1]) and 'data-testid="first-page"' in second
    report = client.get("/audit/verify", headers={"HX-Request": "true"}).text
    assert 'data-ok="true"' in report and "审计日志完整" in report and "<html" not in report


def test_stats_dashboard(client: TestClient, seed: Seed, ex: ExchangeSeed) -> None:
    for status, latency in ((200, 7), (200, 9), (500, 30)):
        append_call(seed.db, system=ex.system_code, org=seed.org2_code, service=ex.service_code, mode="query",
                    status=status, records=3, nbytes=100, latency_ms=latency)
    login(client, ex, "steward2")  # the consumer: its own calls only
    page = client.get("/exchange/stats")
    assert page.status_code == 200
    body = main_of(page.text)
    assert "本部门发起或提供的调用" in body and 'src="/static/vendor/echarts.min.js' in body
    data = json.loads(unescape(re.search(r"data-stats='([^']+)'", body).group(1)))  # type: ignore[union-attr]
    chart = data["chart"]
    assert sum(chart["ok"]) >= 2 and sum(chart["failed"]) >= 1 and len(chart["days"]) == 30
    assert chart["services"][0].startswith(ex.service_code) and data["labels"]["ok"] == "成功"
    calls = re.search(r'data-testid="stat-calls">\s*<span class="tile-value">([\d,]+)<', body)
    assert calls and int(calls.group(1).replace(",", "")) == sum(chart["ok"]) + sum(chart["failed"])
    bad = client.get("/exchange/stats", params={"from": "2026-02-30"})
    assert bad.status_code == 422 and "from must be a date" in bad.text
    backwards = client.get("/exchange/stats", params={"from": "2026-03-02", "to": "2026-03-01"})
    assert backwards.status_code == 422 and 'data-testid="range-error"' in backwards.text


def test_stats_and_audit_need_sign_in(client: TestClient) -> None:
    for path in ("/exchange/stats", "/audit", "/exchange/services", "/exchange/applications"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login"), path
