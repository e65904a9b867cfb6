"""Every form post must carry a valid, fresh token bound to the browser and to the session."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from webseed import Seed, csrf_of, sign_in

from onceonly.deps import SESSION_COOKIE
from onceonly.web import csrf
from onceonly.web.csrf import CSRF_COOKIE


def assert_rejected(response: object) -> None:
    assert response.status_code == 403  # type: ignore[attr-defined]
    text: str = response.text  # type: ignore[attr-defined]
    assert "表单未被受理" in text and 'data-testid="error-page"' in text
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    assert SESSION_COOKIE not in response.cookies  # type: ignore[attr-defined]


def test_login_without_token_is_refused(client: TestClient, seed: Seed) -> None:
    client.get("/login")
    assert_rejected(client.post("/login", data={"username": seed.username, "password": seed.password}))


def test_login_with_a_wrong_or_tampered_token_is_refused(client: TestClient, seed: Seed) -> None:
    token = csrf_of(client.get("/login").text)
    for bad in ("x", token[:-2] + ("AA" if not token.endswith("AA") else "BB"), token + "x"):
        assert_rejected(client.post("/login", data={"username": seed.username, "password": seed.password,
                                                    "csrf_token": bad}))


def test_a_token_without_its_cookie_is_refused(client: TestClient, seed: Seed) -> None:
    token = csrf_of(client.get("/login").text)
    client.cookies.delete(CSRF_COOKIE)
    assert_rejected(client.post("/login", data={"username": seed.username, "password": seed.password,
                                                "csrf_token": token}))


def test_a_token_from_another_browser_is_refused(app: object, client: TestClient, seed: Seed) -> None:
    other = TestClient(app, follow_redirects=False)  # type: ignore[arg-type]
    foreign = csrf_of(other.get("/login").text)
    client.get("/login")
    assert_rejected(client.post("/login", data={"username": seed.username, "password": seed.password,
                                                "csrf_token": foreign}))


def test_a_token_from_before_sign_in_no_longer_works_after(client: TestClient, seed: Seed) -> None:
    before = csrf_of(client.get("/login").text)
    assert sign_in(client, seed.username, seed.password).status_code == 303
    assert_rejected(client.post("/logout", data={"csrf_token": before}))
    assert client.get("/").status_code == 200  # still signed in: the forged logout did nothing


def test_an_expired_token_is_refused(client: TestClient, seed: Seed, monkeypatch: pytest.MonkeyPatch) -> None:
    token = csrf_of(client.get("/login").text)
    monkeypatch.setattr(csrf, "MAX_AGE_SECONDS", -1)
    assert_rejected(client.post("/login", data={"username": seed.username, "password": seed.password,
                                                "csrf_token": token}))


def test_logout_and_language_switch_need_the_token(signed_in: TestClient) -> None:
    assert_rejected(signed_in.post("/logout"))
    assert signed_in.get("/").status_code == 200
    response = signed_in.post("/lang", data={"lang": "en", "next": "/"})
    assert_rejected(response)
    assert "lang" not in response.cookies


def test_the_header_works_for_htmx(signed_in: TestClient) -> None:
    token = csrf_of(signed_in.get("/").text)
    response = signed_in.post("/logout", headers={"X-CSRF-Token": token, "HX-Request": "true"})
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/login"


def test_the_nonce_cookie_is_kept_across_pages(client: TestClient) -> None:
    client.get("/login")
    nonce = client.cookies[CSRF_COOKIE]
    again = client.get("/login")
    assert CSRF_COOKIE not in again.cookies  # not re-issued
    assert client.cookies[CSRF_COOKIE] == nonce


def test_every_form_in_the_templates_posts_a_token() -> None:
    import re

    from onceonly.web.i18n import TEMPLATES_DIR

    for path in TEMPLATES_DIR.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        for form in re.findall(r"<form\b[^>]*>.*?</form>", text, flags=re.S):
            if re.search(r'method="post"', form, flags=re.I):
                assert 'name="csrf_token"' in form, f"{path.name}: a POST form without csrf_token"
