"""Loading data in real Chromium: a steward uploads a GB18030 CSV with a bad row from the resource
page and reads the report (same set-up as test_web_browser.py: Debian's /usr/bin/chromium driven
by Playwright, a real uvicorn server on a free port, a seeded SQLite database).

Set ONCEONLY_TEST_SCREENSHOTS=/some/dir to keep screenshots of the pages visited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from browser_kit import launch, open_page, require_chromium, serve, shot
from webseed import Seed, seed_database

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import create_user
from onceonly.app import create_app
from onceonly.catalog import orgs
from onceonly.kit.identifiers import make_citizen_id

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seed, str]]:
    """A real server in a background thread; yields its base URL, the seed and the password of
    `steward1`, a data steward of the seed's department (示例市公安局)."""
    seed = seed_database(tmp_path_factory.mktemp("web-ingest-live"))
    with seed.db.session() as s:
        _, password = create_user(s, Actor.cli(), "steward1", "steward", orgs.get_org(s, seed.org_code).id)
    with serve(create_app(seed.settings, seed.db), "uvicorn-web-tests") as base:
        yield base, seed, password
    seed.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as b:
        yield b


@pytest.fixture
def page(browser: Browser, live: Any) -> Iterator[Page]:
    with open_page(browser, live[0], accept_downloads=True) as pg:
        yield pg


def test_a_steward_uploads_a_gb18030_csv_and_reads_the_report(page: Page, live: tuple[str, Seed, str],
                                                             tmp_path: Path) -> None:
    _, seed, password = live
    good = [make_citizen_id("341802", date(1990, 5, 1 + i), 200 + i, i % 2 == 0) for i in range(3)]
    bad = good[1][:-1] + ("0" if good[1][-1] != "0" else "1")  # a wrong check digit
    text = ("公民身份号码,姓名,性别\n"
            f"{good[0]},欧阳娜娜,2\n{bad},司马光,1\n{good[2]},诸葛亮,1\n")
    upload = tmp_path / "户籍人口.csv"
    upload.write_bytes(text.encode("gb18030"))

    page.goto(f"/catalog/resources/{seed.resource_id}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.fill("#username", "steward1")
    page.fill("#password", password)
    page.locator("form[action='/login'] button[type=submit]").click()
    expect(page.get_by_test_id("resource-title")).to_have_text("户籍人口基本信息")

    panel = page.get_by_test_id("ingest-panel")  # loaded by htmx into the resource page
    expect(panel).to_contain_text("批次记录")
    expect(panel).to_contain_text("该资源尚未导入过数据")
    panel.get_by_role("link", name="上传数据").click()

    expect(page.get_by_role("heading", name="上传数据")).to_be_visible()
    expect(page.get_by_test_id("upload-resource")).to_have_text("户籍人口基本信息")
    expect(page.locator("main")).to_contain_text("全量替换")
    page.set_input_files("#file", str(upload))
    shot(page, "ingest-upload")
    page.get_by_test_id("upload-submit").click()

    expect(page).to_have_url(re.compile(r"/batches/\d+$"))
    body = page.get_by_test_id("batch-body")
    expect(body).to_have_attribute("data-status", "committed")  # polled until the batch finished
    expect(page.get_by_test_id("count-read")).to_contain_text("3")
    expect(page.get_by_test_id("count-inserted")).to_contain_text("2")
    expect(page.get_by_test_id("count-rejected")).to_contain_text("1")
    expect(page.get_by_test_id("batch-outcome")).to_contain_text("1 行被拒绝")
    expect(page.get_by_test_id("batch-file")).to_contain_text("户籍人口.csv")
    expect(page.get_by_test_id("batch-file")).to_contain_text("gb18030")
    expect(page.get_by_test_id("batch-run")).to_contain_text("steward1")
    expect(page.get_by_test_id("rule-counts")).to_contain_text("citizen_id.check_digit")
    rejected = page.get_by_test_id("rejections-table")
    expect(rejected.locator("tbody tr")).to_have_count(1)
    expect(rejected).to_contain_text("citizen_id.check_digit")
    expect(rejected).to_contain_text("身份证号校验码错误")
    shot(page, "ingest-report")

    link = page.get_by_test_id("download-rejections")
    expect(link).to_have_attribute("href", re.compile(r"^/batches/\d+/rejections\.csv$"))
    with page.expect_download() as info:
        link.click()
    downloaded = Path(info.value.path()).read_text(encoding="utf-8-sig")
    assert downloaded.splitlines()[0] == "_row,_problems,公民身份号码,姓名,性别"
    assert bad in downloaded and "司马光" in downloaded
    expect(page.get_by_test_id("resubmit-link")).to_have_attribute(
        "href", re.compile(rf"/catalog/resources/{seed.resource_id}/upload\?resubmit_of=\d+$"))

    page.get_by_role("link", name="户籍人口基本信息").first.click()
    expect(page.get_by_test_id("batches-table")).to_contain_text("户籍人口.csv")
    expect(page.get_by_test_id("row-count")).to_have_text("9")
    shot(page, "ingest-resource")
