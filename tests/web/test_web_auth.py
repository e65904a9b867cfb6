"""Sign in, sign out, lockout, cookies and the redirect to the login page."""

from __future__ import annotations

from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from fastapi.testclient import TestClient
from webseed import Seed, csrf_of, sign_in

from onceonly.accounts.actor import Actor
from onceonly.accounts.service import create_user
from onceonly.app import create_app
from onceonly.deps import SESSION_COOKIE
from onceonly.web.csrf import CSRF_COOKIE


def set_cookie_header(response: object, name: str) -> str:
    headers = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    found = [h for h in headers if h.startswith(f"{name}=")]
    assert found, f"no Set-Cookie for {name} in {headers}"
    return str(found[-1])


def cookie_attrs(header: str) -> dict[str, str]:
    morsel = next(iter(SimpleCookie(header).values()))
    return {k: str(v) for k, v in morsel.items() if v}


def test_login_page_is_a_chinese_form_with_a_csrf_cookie(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text
    assert "登录工作人员控制台" in page.text
    assert csrf_of(page.text)
    attrs = cookie_attrs(set_cookie_header(page, CSRF_COOKIE))
    assert attrs["httponly"] and attrs["samesite"].lower() == "lax" and attrs["path"] == "/"


def test_sign_in_sets_a_hardened_session_cookie_and_lands_home(client: TestClient, seed: Seed) -> None:
    response = sign_in(client, seed.username, seed.password)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    header = set_cookie_header(response, SESSION_COOKIE)
    attrs = cookie_attrs(header)
    assert attrs["httponly"] and attrs["samesite"].lower() == "lax" and attrs["path"] == "/"
    assert "secure" not in attrs  # plain http and cookie_secure=auto
    home = client.get("/")
    assert home.status_code == 200
    assert seed.username in home.text and "概览" in home.text


def test_wrong_password_shows_the_service_message(client: TestClient, seed: Seed) -> None:
    response = sign_in(client, seed.username, "wrong-password-1")
    assert response.status_code == 401
    assert "登录失败" in response.text
    assert "用户名或密码错误 / wrong username or password" in response.text
    assert SESSION_COOKIE not in response.cookies
    assert f'value="{seed.username}"' in response.text  # the username stays filled in


def test_unknown_user_and_empty_form(client: TestClient) -> None:
    assert "用户名或密码错误" in sign_in(client, "nobody-here", "whatever").text
    empty = sign_in(client, "", "")
    assert empty.status_code == 400
    assert "请输入用户名和密码" in empty.text


def test_lockout_after_five_failures_shows_the_lock_message(client: TestClient, seed: Seed) -> None:
    with seed.db.session(write=True) as s:
        _, password = create_user(s, Actor.cli(), "locky", "auditor", None)
    for _ in range(seed.settings.max_failed_logins):
        assert sign_in(client, "locky", "not-it").status_code == 401
    locked = sign_in(client, "locky", password)  # even the right password is refused now
    assert locked.status_code == 423
    assert "账号已锁定" in locked.text
    assert "该账号因多次登录失败已被锁定" in locked.text
    assert SESSION_COOKIE not in locked.cookies


def test_next_is_followed_only_to_local_paths(client: TestClient, seed: Seed) -> None:
    assert sign_in(client, seed.username, seed.password, "/orgs?x=1").headers["location"] == "/orgs?x=1"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        assert sign_in(client, seed.username, seed.password, evil).headers["location"] == "/"


def test_pages_redirect_to_login_with_next(client: TestClient) -> None:
    response = client.get("/catalog?q=户籍&page=2")
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query)["next"] == ["/catalog?q=%E6%88%B7%E7%B1%8D&page=2"]
    for path in ("/", "/orgs", "/catalog/resources/1"):
        assert client.get(path).headers["location"].startswith("/login")
    assert client.get("/").headers["location"] == "/login"


def test_htmx_requests_are_told_to_navigate_to_login(client: TestClient) -> None:
    response = client.get("/catalog?q=x", headers={"HX-Request": "true"})
    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("/login?next=/catalog")


def test_login_page_when_signed_in_goes_on(signed_in: TestClient) -> None:
    assert signed_in.get("/login?next=/orgs").headers["location"] == "/orgs"


def test_sign_out_ends_the_session(signed_in: TestClient) -> None:
    token = signed_in.cookies[SESSION_COOKIE]
    response = signed_in.post("/logout", data={"csrf_token": csrf_of(signed_in.get("/").text)})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    cleared = cookie_attrs(set_cookie_header(response, SESSION_COOKIE))
    assert cleared.get("max-age") == "0"
    assert signed_in.get("/").status_code == 303
    # The old token is dead on the server, not only forgotten by the browser.
    signed_in.cookies.set(SESSION_COOKIE, token)
    assert signed_in.get("/").headers["location"] == "/login"


def test_signing_in_again_ends_the_previous_session(client: TestClient, seed: Seed) -> None:
    sign_in(client, seed.username, seed.password)
    first = client.cookies[SESSION_COOKIE]
    sign_in(client, seed.username, seed.password)
    assert client.cookies[SESSION_COOKIE] != first
    client.cookies.set(SESSION_COOKIE, first)
    assert client.get("/").status_code == 303


def test_cookie_secure_always_and_auto_on_https(seed: Seed) -> None:
    always = create_app(seed.settings.model_copy(update={"cookie_secure": "always"}), seed.db)
    with TestClient(always, follow_redirects=False) as c:
        # Behind a TLS-terminating proxy the app may see http; the cookies are Secure anyway
        # (so this plain-http client does not send them back and the form check fails).
        page = c.get("/login")
        assert "secure" in cookie_attrs(set_cookie_header(page, CSRF_COOKIE))
        assert sign_in(c, seed.username, seed.password).status_code == 403
    with TestClient(always, base_url="https://testserver", follow_redirects=False) as c:
        response = sign_in(c, seed.username, seed.password)
        assert "secure" in cookie_attrs(set_cookie_header(response, SESSION_COOKIE))
    auto = create_app(seed.settings, seed.db)
    with TestClient(auto, base_url="https://testserver", follow_redirects=False) as c:
        response = sign_in(c, seed.username, seed.password)
        assert "secure" in cookie_attrs(set_cookie_header(response, SESSION_COOKIE))
    never = create_app(seed.settings.model_copy(update={"cookie_secure": "never"}), seed.db)
    with TestClient(never, base_url="https://testserver", follow_redirects=False) as c:
        response = sign_in(c, seed.username, seed.password)
        assert "secure" not in cookie_attrs(set_cookie_header(response, SESSION_COOKIE))


def test_api_token_callers_still_get_json_problems(client: TestClient) -> None:
    response = client.get("/api/v1/orgs")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
