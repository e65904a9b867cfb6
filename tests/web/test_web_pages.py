"""The console pages: dashboard, catalog browser, resource page, departments, errors, assets."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from webseed import EXTRA_RESOURCES, HUKOU_ROWS, Seed

from onceonly.app import create_app
from onceonly.errors import PermissionDenied
from onceonly.web import catalog_pages
from onceonly.web.i18n import TEMPLATES_DIR
from onceonly.web.pagination import Pager, page_number
from onceonly.web.security import safe_next

TOTAL = 1 + EXTRA_RESOURCES


def main_of(html: str) -> str:
    return html.split('<main', 1)[1].split("</main>", 1)[0]


def results_of(html: str) -> str:
    return html.split('data-testid="results"', 1)[1]


def test_dashboard_counts(signed_in: TestClient) -> None:
    page = signed_in.get("/")
    for testid, value in (("stat-departments", "2"), ("stat-catalogs", "19"), ("stat-published", str(TOTAL)),
                          ("stat-drafts", "0"), ("stat-rows", str(HUKOU_ROWS))):
        block = page.text.split(f'data-testid="{testid}"', 1)[1].split("</", 1)[0]
        assert f">{value}" in block, (testid, block)


def test_catalog_tree_lists_kinds_catalogs_categories_and_counts(signed_in: TestClient) -> None:
    page = signed_in.get("/catalog")
    tree = page.text.split('data-testid="catalog-tree"', 1)[1].split("</nav>", 1)[0]
    for text in ("基础信息资源目录", "主题信息资源目录", "部门信息资源目录", "人口基础信息资源目录", "公共服务",
                 "示例市公安局信息资源目录"):
        assert text in tree
    assert re.search(r'href="/catalog\?catalog=101&amp;category=001".*?</a>\s*<span class="count">1</span>',
                     tree, flags=re.S)


def test_browse_by_catalog_and_category(signed_in: TestClient) -> None:
    page = results_of(signed_in.get("/catalog?catalog=102&category=001").text)
    assert f"共 {EXTRA_RESOURCES} 项资源" in page and "户籍人口基本信息" not in page
    page = results_of(signed_in.get("/catalog?catalog=101").text)
    assert "共 1 项资源" in page and "户籍人口基本信息" in page
    page = signed_in.get("/catalog?catalog=999")
    assert "筛选条件不存在" in page.text and "catalog 999 not found" in page.text


@pytest.mark.parametrize("q", ["户籍人口", "hukou", "101001/000001", "示例市公安局", "公安局"])
def test_search_by_name_code_and_provider(signed_in: TestClient, q: str) -> None:
    page = results_of(signed_in.get("/catalog", params={"q": q}).text)
    assert "共 1 项资源" in page and "户籍人口基本信息" in page and "市场主体" not in page


def test_provider_filter(signed_in: TestClient, seed: Seed) -> None:
    page = results_of(signed_in.get("/catalog", params={"provider": seed.org2_code}).text)
    assert f"共 {EXTRA_RESOURCES} 项资源" in page and "户籍人口基本信息" not in page
    page = results_of(signed_in.get("/catalog", params={"provider": seed.org2_code, "q": "户籍"}).text)
    assert "没有符合条件的资源" in page


def test_search_treats_like_wildcards_literally(signed_in: TestClient) -> None:
    assert "没有符合条件的资源" in signed_in.get("/catalog", params={"q": "%_%"}).text


def test_pagination(signed_in: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_pages, "PAGE_SIZE", 3)
    first = results_of(signed_in.get("/catalog").text)
    assert f"共 {TOTAL} 项资源，当前显示第 1–3 项" in first
    assert 'href="/catalog?page=2"' in first and 'rel="next"' in first
    second = results_of(signed_in.get("/catalog?page=2").text)
    assert f"当前显示第 4–{TOTAL} 项" in second and 'rel="prev"' in second
    assert "市场主体登记信息2" in second and "户籍人口基本信息" not in second
    assert "当前显示第 1–3 项" in results_of(signed_in.get("/catalog?page=abc").text)
    filtered = results_of(signed_in.get("/catalog", params={"q": "信息", "page": "1"}).text)
    assert 'href="/catalog?q=%E4%BF%A1%E6%81%AF&amp;page=2"' in filtered


def test_htmx_gets_only_the_results_fragment(signed_in: TestClient) -> None:
    fragment = signed_in.get("/catalog", params={"q": "hukou"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    assert "<html" not in fragment.text and 'data-testid="results"' in fragment.text
    assert "户籍人口基本信息" in fragment.text
    restore = signed_in.get("/catalog", headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert "<html" in restore.text


@pytest.mark.parametrize("ref", ["1", "hukou", "101001/000001"])
def test_resource_page(signed_in: TestClient, ref: str) -> None:
    page = signed_in.get(f"/catalog/resources/{ref}")
    assert page.status_code == 200
    main = main_of(page.text)
    for text in ("户籍人口基本信息", "101001/000001", "示例市公安局", "户籍登记的人口基本信息", "人口基础信息资源目录",
                 "101001 综合", "数据库", "每日", "已发布", "citizen_id",
                 "有条件共享", "用于政务服务身份核验", "比对验证", "检索查询", "接口访问", "批量复制", "不予开放",
                 "公民身份号码", "字符型", "敏感个人信息（PIPL 第28条）", "公民身份号码（GB 11643）", "GB/T 2261.1",
                 "主键"):
        assert text in main, text
    assert f'data-testid="row-count">{HUKOU_ROWS}<' in main


def test_unknown_resource_is_a_404_page(signed_in: TestClient) -> None:
    page = signed_in.get("/catalog/resources/does_not_exist")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "未找到" in page.text and "resource does_not_exist not found" in page.text
    assert "退出登录" in page.text  # still the signed-in layout


def test_org_list(signed_in: TestClient, seed: Seed) -> None:
    page = signed_in.get("/orgs")
    table = page.text.split('data-testid="org-table"', 1)[1]
    assert "示例市公安局" in table and "示例市市场监督管理局" in table and seed.org_code in table
    assert f'href="/catalog?provider={seed.org_code}"' in table
    assert 'href="/catalog?catalog=301"' in table


def test_permission_denied_renders_a_403_page(seed: Seed) -> None:
    app = create_app(seed.settings, seed.db)

    @app.get("/forbidden-page")
    def forbidden() -> None:
        raise PermissionDenied("role auditor may not resource.edit")

    with TestClient(app) as c:
        page = c.get("/forbidden-page")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/html")
    assert "无权访问" in page.text and "role auditor may not resource.edit" in page.text


def test_security_headers_on_pages_and_assets(client: TestClient) -> None:
    for path in ("/login", "/static/css/console.css", "/static/vendor/htmx.min.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "http:" not in csp and "https:" not in csp and "unsafe" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
    assert client.get("/login").headers["cache-control"] == "no-store"
    assert "content-security-policy" not in client.get("/docs").headers  # Swagger UI loads from its CDN


def test_assets_are_local_and_htmx_is_vendored_with_its_license(client: TestClient) -> None:
    js = client.get("/static/vendor/htmx.min.js")
    assert "javascript" in js.headers["content-type"] and "htmx" in js.text[:200] and "BSD" in js.text[:200]
    assert (TEMPLATES_DIR.parent / "static" / "vendor" / "htmx.LICENSE").is_file()
    for path in TEMPLATES_DIR.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r'(src|href)="(https?:)?//', text), f"{path.name} loads something from elsewhere"
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), f"{path.name} has an inline script (CSP forbids)"
        assert "style=" not in text and "<style" not in text, f"{path.name} has an inline style (CSP forbids)"


def test_page_number_and_pager() -> None:
    assert [page_number(v) for v in (None, "", "0", "-1", "x", "3", "99999999")] == [1, 1, 1, 1, 1, 3, 1]
    pager = Pager(6, 10, 200, "/catalog", (("q", "a b"), ("catalog", "")))
    assert pager.pages == 20 and pager.offset == 50
    assert pager.window() == [1, None, 4, 5, 6, 7, 8, None, 20]
    assert pager.url(1) == "/catalog?q=a+b" and pager.url(2) == "/catalog?q=a+b&page=2"
    assert Pager(1, 10, 0, "/catalog").pages == 1


def test_safe_next() -> None:
    assert safe_next("/catalog?q=1") == "/catalog?q=1"
    for bad in (None, "", "catalog", "//evil", "/\\evil", "https://evil", "/x\r\nSet-Cookie: a=b"):
        assert safe_next(bad) == "/"
