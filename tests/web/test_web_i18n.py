"""Chinese by default, English by a switch; the message catalogs are complete."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir
from fastapi.testclient import TestClient
from webseed import Seed, csrf_of

from onceonly.accounts.roles import ROLES
from onceonly.app import create_app
from onceonly.catalog.vocab import LABELS
from onceonly.web.i18n import LANGUAGES, TRANSLATIONS_DIR, WEB_DIR, read_catalog
from onceonly.web.labels import EN_LABELS, EN_ROLE_LABELS

PLACEHOLDER = re.compile(r"%\(\w+\)s")


def template_msgids() -> set[str]:
    """Every message the templates translate, found the way `pybabel extract` finds them
    (both `_("...")` calls and `{% trans %}` blocks)."""
    method_map = [("**/templates/**.html", "jinja2")]
    options = {"**/templates/**.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "true",
                                        "lstrip_blocks": "true"}}
    found: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(WEB_DIR), method_map, options):
        found.update([message] if isinstance(message, str) else [m for m in message if m])
    return found


def test_templates_use_translations() -> None:
    assert len(template_msgids()) > 50


def test_every_template_message_has_a_chinese_translation() -> None:
    zh = read_catalog("zh")
    missing = sorted(m for m in template_msgids() if not (zh.get(m) and zh.get(m).string))  # type: ignore[union-attr]
    assert not missing, f"add zh translations for: {missing}"
    fuzzy = sorted(str(m.id) for m in zh if m.id and m.fuzzy)
    assert not fuzzy, f"fuzzy zh entries are not used: {fuzzy}"


def test_every_catalog_lists_exactly_the_template_messages() -> None:
    used = template_msgids()
    for lang in LANGUAGES:
        ids = {str(m.id) for m in read_catalog(lang) if m.id}
        assert ids == used, f"{lang}: missing {sorted(used - ids)}, obsolete {sorted(ids - used)}"


def test_translations_keep_their_placeholders() -> None:
    for m in read_catalog("zh"):
        if m.id and m.string:
            assert sorted(PLACEHOLDER.findall(str(m.id))) == sorted(PLACEHOLDER.findall(str(m.string))), m.id


def test_no_compiled_catalogs_are_needed() -> None:
    assert not list(Path(TRANSLATIONS_DIR).rglob("*.mo"))


def test_english_labels_cover_the_vocabularies_and_roles() -> None:
    assert {k: set(v) for k, v in EN_LABELS.items()} == {k: set(v) for k, v in LABELS.items()}
    assert set(EN_ROLE_LABELS) == set(ROLES)


def switch(client: TestClient, lang: str, next_: str = "/") -> object:
    token = csrf_of(client.get("/login" if next_ == "/login" else next_).text)
    return client.post("/lang", data={"lang": lang, "next": next_, "csrf_token": token})


def test_chinese_is_the_default(signed_in: TestClient) -> None:
    page = signed_in.get("/catalog")
    assert '<html lang="zh-CN">' in page.text
    assert "政务信息资源目录" in page.text and "基础信息资源目录" in page.text and "English" in page.text


def test_switch_to_english_and_back(signed_in: TestClient) -> None:
    response = switch(signed_in, "en", "/catalog?q=hukou")
    assert response.status_code == 303  # type: ignore[attr-defined]
    assert response.headers["location"] == "/catalog?q=hukou"  # type: ignore[attr-defined]
    assert signed_in.cookies["lang"] == "en"
    page = signed_in.get("/catalog?q=hukou")
    assert '<html lang="en">' in page.text
    assert "Government information resource catalog" in page.text
    assert "Basic catalogs" in page.text and "Shared on conditions" in page.text
    assert "基础信息资源目录" not in page.text.split("<main", 1)[1].split('class="tree', 1)[0]
    resource = signed_in.get("/catalog/resources/hukou")
    assert "Sensitive personal information (PIPL art. 28)" in resource.text
    assert "户籍人口基本信息" in resource.text  # data stays as entered
    switch(signed_in, "zh", "/catalog")
    assert "政务信息资源目录" in signed_in.get("/catalog").text


def test_language_works_before_sign_in(client: TestClient) -> None:
    switch(client, "en", "/login")
    assert "Sign in to the staff console" in client.get("/login").text


def test_unknown_language_and_foreign_next_are_ignored(client: TestClient) -> None:
    response = switch(client, "fr", "/login")
    assert "lang" not in response.cookies  # type: ignore[attr-defined]
    token = csrf_of(client.get("/login").text)
    response = client.post("/lang", data={"lang": "en", "next": "https://evil.example/", "csrf_token": token})
    assert response.headers["location"] == "/"
    client.cookies.set("lang", "xx")
    assert '<html lang="zh-CN">' in client.get("/login").text


def test_default_language_setting(seed: Seed) -> None:
    app = create_app(seed.settings.model_copy(update={"default_language": "en"}), seed.db)
    with TestClient(app) as c:
        assert '<html lang="en">' in c.get("/login").text
