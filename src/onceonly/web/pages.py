"""Rendering of console pages and of the errors app.py hands to the web (401/403 off /api)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from onceonly.accounts.actor import Actor
from onceonly.errors import PlatformError
from onceonly.web import csrf
from onceonly.web.i18n import environment, lang_of
from onceonly.web.security import safe_next


def is_htmx(request: Request) -> bool:
    """An htmx request that wants a fragment (a history restore wants the whole page)."""
    return (request.headers.get("hx-request") == "true"
            and request.headers.get("hx-history-restore-request") != "true")


def render(request: Request, template: str, context: dict[str, Any] | None = None, *,
           actor: Actor | None = None, status: int = 200, nav: str = "") -> HTMLResponse:
    """Render `template` in the request's language with the shared page context."""
    lang = lang_of(request)
    ctx: dict[str, Any] = {
        "request": request, "actor": actor, "nav": nav, "here": current_page(request),
        "csrf_token": csrf.token_for(request), **(context or {}),
    }
    html = environment(lang).get_template(template).render(ctx)
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Cookie, HX-Request"
    csrf.attach_cookie(request, response)
    return response


def redirect(url: str, request: Request | None = None) -> Response:
    """303 to `url`; for htmx, tell htmx to navigate the whole page instead of swapping."""
    if request is not None and request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def current_page(request: Request) -> str:
    """Where to come back to (after a language switch or a sign-in): this page if it was a GET;
    after a form post, the login page if that was the form, else home."""
    if request.method in ("GET", "HEAD"):
        return safe_next(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return "/login" if request.url.path == "/login" else "/"


def login_url(request: Request) -> str:
    target = current_page(request)
    return "/login" if target in ("/", "/login") else f"/login?next={quote(target, safe='/')}"


def render_error(request: Request, exc: PlatformError, actor: Actor | None = None) -> Response:
    """A web request failed: not signed in → the login page; otherwise an error page."""
    if exc.status == 401:
        return redirect(login_url(request), request)
    context = {"status": exc.status, "code": exc.code, "message": exc.message}
    return render(request, "error.html", context, actor=actor, status=exc.status)
