"""The console in real Chromium (Debian's /usr/bin/chromium driven by Playwright), against a
real uvicorn server on a free port and a seeded SQLite database.

Set ONCEONLY_TEST_SCREENSHOTS=/some/dir to keep screenshots of the pages visited."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from webseed import Seed, seed_database

from onceonly.app import create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is required when CI=true (apt-get install chromium)", pytrace=False)
    pytest.skip(f"{CHROMIUM} not installed", allow_module_level=True)

from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seed]]:
    """A real server in a background thread; yields its base URL and the seed."""
    seed = seed_database(tmp_path_factory.mktemp("web-live"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(seed.settings, seed.db), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-web-tests", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            pytest.fail("the test server did not answer /healthz within 20 s")
        time.sleep(0.1)
    yield base, seed
    server.should_exit = True
    thread.join(timeout=10)
    seed.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, live: tuple[str, Seed]) -> Iterator[Page]:
    """A fresh browser context (no cookies) per test; fails the test on any console error,
    which is how a Content-Security-Policy violation or a broken asset shows up."""
    context = browser.new_context(base_url=live[0], locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and "401" not in msg.text and "favicon" not in msg.text:
            errors.append(msg.text)

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"browser console errors: {errors}"


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("ONCEONLY_TEST_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in(page: Page, seed: Seed, password: str | None = None) -> None:
    if "/login" not in page.url:
        page.goto("/login")
    page.fill("#username", seed.username)
    page.fill("#password", password if password is not None else seed.password)
    page.locator("form[action='/login'] button[type=submit]").click()


def test_failed_login_shows_the_error_in_chinese(page: Page, live: tuple[str, Seed]) -> None:
    _, seed = live
    page.goto("/login")
    shot(page, "login")
    sign_in(page, seed, password="not-the-password")
    alert = page.get_by_test_id("login-error")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("登录失败")
    expect(alert).to_contain_text("用户名或密码错误")
    expect(page.locator("#username")).to_have_value(seed.username)
    shot(page, "login-failed")


def test_sign_in_and_browse_the_tree_to_a_resource(page: Page, live: tuple[str, Seed]) -> None:
    _, seed = live
    page.goto(f"/catalog/resources/{seed.resource_id}")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    sign_in(page, seed)
    expect(page).to_have_url(re.compile(rf"/catalog/resources/{seed.resource_id}$"))  # back where we were headed

    page.get_by_role("link", name="首页").click()
    expect(page.get_by_role("heading", name="概览")).to_be_visible()
    expect(page.get_by_test_id("stat-published")).to_contain_text("4")
    shot(page, "home")

    page.get_by_role("navigation", name="主导航").get_by_role("link", name="目录").click()
    tree = page.get_by_test_id("catalog-tree")
    expect(tree).to_contain_text("人口基础信息资源目录")
    tree.get_by_role("link", name="101001 综合").click()
    expect(page).to_have_url(re.compile(r"catalog=101&category=001"))
    results = page.get_by_test_id("results")
    expect(results).to_contain_text("共 1 项资源")
    results.get_by_role("link", name="户籍人口基本信息").click()

    expect(page.get_by_test_id("resource-title")).to_have_text("户籍人口基本信息")
    expect(page.get_by_test_id("resource-code")).to_have_text(seed.resource_code)
    expect(page.get_by_test_id("row-count")).to_have_text("7")
    fields = page.get_by_test_id("fields-table")
    expect(fields).to_contain_text("公民身份号码")
    expect(fields).to_contain_text("敏感个人信息")
    expect(fields).to_contain_text("GB/T 2261.1")
    expect(page.locator("main")).to_contain_text("用于政务服务身份核验")
    expect(page.locator("main")).to_contain_text("比对验证")
    shot(page, "resource")


@pytest.mark.parametrize("query", ["户籍", "hukou", "101001/000001", "公安局"])
def test_search_finds_by_name_code_and_provider(page: Page, live: tuple[str, Seed], query: str) -> None:
    _, seed = live
    sign_in(page, seed)
    page.goto("/catalog")
    results = page.get_by_test_id("results")
    expect(results).to_contain_text("市场主体登记信息0")
    page.fill("#q", query)  # htmx searches as one types, no submit needed
    expect(results).to_contain_text("户籍人口基本信息")
    expect(results).not_to_contain_text("市场主体登记信息0")
    expect(page).to_have_url(re.compile(r"\?q="))  # the search is in the address, so it can be shared
    shot(page, "search")


def test_provider_filter(page: Page, live: tuple[str, Seed]) -> None:
    _, seed = live
    sign_in(page, seed)
    page.goto("/catalog")
    page.select_option("#provider", seed.org2_code)
    results = page.get_by_test_id("results")
    expect(results).to_contain_text("共 3 项资源")
    expect(results).not_to_contain_text("户籍人口基本信息")
    page.fill("#q", "市场监督")
    expect(results).to_contain_text("市场主体登记信息2")


def test_switch_to_english_and_back(page: Page, live: tuple[str, Seed]) -> None:
    _, seed = live
    sign_in(page, seed)
    expect(page.get_by_role("heading", name="概览")).to_be_visible()
    page.get_by_test_id("lang-switch").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("html")).to_have_attribute("lang", "en")
    page.get_by_role("link", name="Catalog", exact=True).first.click()
    expect(page.get_by_test_id("catalog-tree")).to_contain_text("Basic catalogs")
    shot(page, "catalog-en")
    page.get_by_test_id("lang-switch").click()
    expect(page.get_by_test_id("catalog-tree")).to_contain_text("基础信息资源目录")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")


def test_sign_out(page: Page, live: tuple[str, Seed]) -> None:
    _, seed = live
    sign_in(page, seed)
    page.get_by_test_id("logout").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto("/orgs")
    expect(page).to_have_url(re.compile(r"/login\?next=/orgs$"))
