"""Sign in, sign out and the language switch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from onceonly.accounts import service as accounts
from onceonly.accounts.actor import Actor
from onceonly.db import Database
from onceonly.deps import SESSION_COOKIE, DbSession, client_ip, current_actor
from onceonly.errors import AccountLocked, AuthenticationRequired
from onceonly.settings import Settings
from onceonly.web.csrf import csrf_guard
from onceonly.web.i18n import LANG_COOKIE, as_lang
from onceonly.web.pages import redirect, render
from onceonly.web.security import clear_cookie, safe_next, set_cookie

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

MAX_USERNAME = 64
MAX_PASSWORD = 1024
LANG_COOKIE_DAYS = 365


def optional_actor(request: Request, session: Session) -> Actor | None:
    """The signed-in staff member, or None (a stale cookie is not an error here)."""
    try:
        return current_actor(request, session)
    except AuthenticationRequired:
        return None


def _login_context(request: Request, target: str, *, error: str | None = None, error_title: str | None = None,
                   username: str = "") -> dict[str, object]:
    settings: Settings = request.app.state.settings
    return {"next": target, "error": error, "error_title": error_title, "username": username,
            "max_failed": settings.max_failed_logins}


@router.get("/login")
def login_form(request: Request, session: DbSession,
               next_: Annotated[str, Query(alias="next")] = "/") -> Response:
    target = safe_next(next_)
    if optional_actor(request, session) is not None:
        return redirect(target)
    return render(request, "login.html", _login_context(request, target))


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
          next_: Annotated[str, Form(alias="next")] = "/") -> Response:
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    target, ip, username = safe_next(next_), client_ip(request), username.strip()
    error: str | None = None
    error_title = "failed"
    status = 401
    token = ""
    if not username or not password:
        error_title, status = "missing", 400
    elif len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        error = AuthenticationRequired("用户名或密码错误 / wrong username or password").message
    else:
        # Our own unit of work, committed before we answer: failed attempts (and the lockout
        # counter) must persist, and the new session must exist before the browser follows
        # the redirect.
        with db.session(write=True) as session:
            try:
                user = accounts.authenticate(session, username, password, ip,
                                             settings.max_failed_logins, settings.lockout_minutes)
            except (AuthenticationRequired, AccountLocked) as exc:
                error, status = exc.message, exc.status
                error_title = "locked" if isinstance(exc, AccountLocked) else "failed"
            else:
                previous = request.cookies.get(SESSION_COOKIE)
                if previous:
                    accounts.end_web_session(session, previous)
                token = accounts.start_web_session(session, user, ip)
    if not token:
        context = _login_context(request, target, error=error, error_title=error_title,
                                 username=username[:MAX_USERNAME])
        return render(request, "login.html", context, status=status)
    response = redirect(target)
    set_cookie(request, response, SESSION_COOKIE, token)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        db: Database = request.app.state.db
        with db.session(write=True) as session:
            accounts.end_web_session(session, token)
    response = redirect("/login", request)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.post("/lang")
def switch_language(request: Request, lang: Annotated[str, Form()] = "",
                    next_: Annotated[str, Form(alias="next")] = "/") -> Response:
    response = redirect(safe_next(next_), request)
    chosen = as_lang(lang)
    if chosen:
        set_cookie(request, response, LANG_COOKIE, chosen, max_age=LANG_COOKIE_DAYS * 86400)
    return response
