"""The console in real Chromium (Debian's /usr/bin/chromium driven by Playwright), against a
real uvicorn server on a free port and a seeded SQLite database.

Set ONCEONLY_TEST_SCREENSHOTS=/some/dir to keep screenshots of the pages visited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from browser_kit import launch, open_page, require_chromium, serve, shot
from webseed import Seed, seed_database

from onceonly.app import create_app

pytestmark = pytest.mark.browser
require_chromium()

from playwright.sync_api import Browser, Page, expect  # noqa: E402


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seed]]:
    """A real server in a background thread; yields its base URL and the seed."""
    seed = seed_database(tmp_path_factory.mktemp("web-live"))
    with serve(create_app(seed.settings, seed.db), "uvicorn-web-tests") as base:
        yield base, seed
    seed.db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch() as b:
        yield b


@pytest.fixture
def page(browser: Browser, live: Any) -> Iterator[Page]:
    with open_page(browser, live[0]) as pg:
        yield pg


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
