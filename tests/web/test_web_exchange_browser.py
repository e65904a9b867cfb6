"""The exchange pages in real Chromium (Debian's /usr/bin/chromium driven by Playwright, a real
uvicorn server on a free port, a seeded SQLite database; any console error — a CSP violation,
a broken asset — fails the test):

- a steward publishes a service, a consumer applies, the provider's reviewer approves with
  fewer fields, and the consumer sees the application approved;
- an auditor filters the audit log, exports it and verifies the chain;
- the statistics dashboard draws its charts, in Chinese and in English.

Set ONCEONLY_TEST_SCREENSHOTS=/some/dir to keep screenshots of the pages visited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_kit import launch, open_page, require_chromium, serve, shot
from webseed import ExchangeSeed, Seed, seed_database, seed_exchange

from onceonly.app import create_app
from onceonly.audit import append_call

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402

Live = tuple[str, Seed, ExchangeSeed]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    seed = seed_database(tmp_path_factory.mktemp("web-exchange-live"))
    ex = seed_exchange(seed)
    for status, latency in ((200, 12), (200, 18), (200, 25), (403, 3), (429, 1)):
        append_call(seed.db, system=ex.system_code, org=seed.org2_code, service=ex.service_code, mode="query",
                    status=status, records=10 if status == 200 else 0, nbytes=2048, latency_ms=latency,
                    purpose="案件2026-001")
    with serve(create_app(seed.settings, seed.db), "uvicorn-web-exchange") as base:
        yield base, seed, ex
    seed.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as b:
        yield b


def sign_in(page: Page, ex: ExchangeSeed, username: str, path: str) -> None:
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#username", username)
    page.fill("#password", ex.passwords[username])
    page.locator("form[action='/login'] button[type=submit]").click()


def test_publish_apply_narrow_and_see_it_approved(browser: Browser, live: Live) -> None:
    base, _, ex = live
    with open_page(browser, base) as page:  # the provider's steward publishes
        sign_in(page, ex, "steward1", "/exchange/services")
        expect(page.get_by_role("heading", name="服务目录")).to_be_visible()
        page.get_by_test_id("publish-link").click()
        option = page.locator("#resource option", has_text="机动车登记信息")
        page.select_option("#resource", option.get_attribute("value"))
        page.get_by_test_id("choose-resource").click()
        page.get_by_test_id("mode-query").check()
        page.fill("#name", "机动车登记信息查询")
        page.get_by_test_id("publish-submit").click()
        expect(page.get_by_test_id("service-title")).to_have_text("机动车登记信息查询")
        expect(page.get_by_test_id("service-fields")).to_contain_text("所有人姓名")
        expect(page.get_by_test_id("service-fields")).to_contain_text("GB/T 2260")
        expect(page.get_by_test_id("example-records")).to_contain_text("$ONCEONLY_API_KEY")
        service_code = page.get_by_test_id("service-code").inner_text()
        shot(page, "exchange-service")

    with open_page(browser, base) as page:  # the consumer applies for every field
        sign_in(page, ex, "steward2", "/exchange/services")
        page.get_by_role("link", name="机动车登记信息查询").click()
        page.get_by_test_id("apply-link").click()
        expect(page.get_by_test_id("apply-service")).to_have_text("机动车登记信息查询")
        page.fill("#purpose", "核查企业名下车辆")
        page.fill("#legal_basis", "《道路交通安全法》")
        page.fill("#expected_volume", "200")
        shot(page, "exchange-apply")
        page.get_by_test_id("apply-submit").click()
        expect(page).to_have_url(re.compile(r"/exchange/applications/\d+$"))
        expect(page.get_by_test_id("application-status")).to_contain_text("待提供方审核")
        application_url = page.url

    with open_page(browser, base) as page:  # the provider's reviewer approves fewer fields
        sign_in(page, ex, "reviewer1", "/exchange/applications")
        expect(page.get_by_test_id("tab-review")).to_have_attribute("aria-current", "page")
        page.locator(f"a[href='{application_url.removeprefix(base)}']").first.click()
        expect(page.get_by_test_id("decision-card")).to_be_visible()
        page.get_by_test_id("approve-owner_name").uncheck()
        page.fill("#reason", "最小必要原则")
        shot(page, "exchange-review")
        page.get_by_test_id("approve").click()
        expect(page.get_by_test_id("application-status")).to_contain_text("已批准")

    with open_page(browser, base) as page:  # the consumer sees the grant
        sign_in(page, ex, "steward2", "/exchange/applications")
        row = page.get_by_test_id("application-row").filter(has_text=service_code)
        expect(row).to_contain_text("已批准")
        expect(row).to_contain_text("plate, vehicle_type")
        row.get_by_test_id("application-link").click()
        expect(page.get_by_test_id("fields-approved")).not_to_contain_text("owner_name")
        expect(page.get_by_test_id("grant")).to_contain_text("每分钟 60 次")
        expect(page.get_by_test_id("decisions")).to_contain_text("最小必要原则")
        shot(page, "exchange-approved")


def test_the_auditor_filters_exports_and_verifies(browser: Browser, live: Live) -> None:
    base, _, ex = live
    with open_page(browser, base, accept_downloads=True) as page:
        sign_in(page, ex, "auditor1", "/audit")
        expect(page.get_by_role("heading", name="审计日志")).to_be_visible()
        page.select_option("#kind", "call")
        page.fill("#system", ex.system_code)
        page.fill("#status", "403")
        page.get_by_test_id("audit-filter-submit").click()
        rows = page.get_by_test_id("audit-row")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("案件2026-001")
        page.fill("#status", "")
        page.get_by_test_id("audit-filter-submit").click()
        expect(rows).to_have_count(5)
        with page.expect_download() as info:
            page.get_by_test_id("export-csv").click()
        lines = Path(info.value.path()).read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("seq,") and len(lines) == 6
        assert all(ex.system_code in line for line in lines[1:])
        page.get_by_test_id("verify-chain").click()
        expect(page.get_by_test_id("verify-report")).to_have_attribute("data-ok", "true")
        expect(page.get_by_test_id("verify-report")).to_contain_text("审计日志完整")
        shot(page, "audit-log")


def charts_drawn(page: Page) -> None:
    for name in ("calls", "records", "services", "outcome", "latency"):
        chart = page.get_by_test_id(f"chart-{name}")
        expect(chart).to_have_attribute("data-rendered", "true")
        expect(chart.locator("canvas")).to_have_count(1)
    box: Any = page.get_by_test_id("chart-calls").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)  # a tooltip (on the canvas)
    page.get_by_test_id("chart-outcome").hover()


def test_the_dashboard_draws_its_charts_in_chinese_and_english(browser: Browser, live: Live) -> None:
    base, _, ex = live
    with open_page(browser, base) as page:
        sign_in(page, ex, "steward1", "/exchange/stats")
        expect(page.get_by_role("heading", name="交换统计")).to_be_visible()
        expect(page.get_by_test_id("stat-calls")).to_contain_text("5")
        expect(page.get_by_test_id("stat-records")).to_contain_text("30")
        expect(page.get_by_test_id("stat-failed")).to_contain_text("2")
        expect(page.get_by_test_id("top-services")).to_contain_text(ex.service_code)
        charts_drawn(page)
        shot(page, "exchange-stats-zh")
        page.get_by_test_id("lang-switch").click()
        expect(page.get_by_role("heading", name="Exchange statistics")).to_be_visible()
        expect(page.get_by_test_id("stat-services")).to_contain_text("Services offered")
        charts_drawn(page)
        shot(page, "exchange-stats-en")
