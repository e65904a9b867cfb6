"""CSRF protection for every form of the console: a signed, session-bound double submit.

The browser holds a random nonce in the HttpOnly cookie `onceonly_csrf`. Each form carries
`csrf_token` = itsdangerous signature (with `app.state.secret`) over [nonce, hash of the session
cookie]. A POST passes only if the signature is valid and fresh, the nonce equals the cookie's
and the session is the one the form was rendered for; so a token from another site, another
browser or before a login/logout is refused with 403. htmx requests may send the token in the
`X-CSRF-Token` header instead of the form body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from fastapi import Request
from fastapi.responses import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from onceonly.deps import SAFE_METHODS, SESSION_COOKIE
from onceonly.errors import PermissionDenied
from onceonly.web.security import set_cookie

CSRF_COOKIE = "onceonly_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MAX_AGE_SECONDS = 12 * 3600
_SALT = "onceonly.web.csrf"
_NONCE = re.compile(r"^[A-Za-z0-9_\-]{32,64}$")


class CsrfRejected(PermissionDenied):
    code, title = "csrf", "Form check failed"


def _serializer(request: Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app.state.secret, salt=_SALT)


def _binding(request: Request) -> str:
    session = request.cookies.get(SESSION_COOKIE, "")
    return hashlib.sha256(session.encode()).hexdigest()[:32] if session else "-"


def _nonce(request: Request) -> str:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if _NONCE.match(cookie):
        return cookie
    fresh: str | None = getattr(request.state, "csrf_new_nonce", None)
    if fresh is None:
        fresh = secrets.token_urlsafe(32)
        request.state.csrf_new_nonce = fresh
    return fresh


def token_for(request: Request) -> str:
    """The token to put in this page's forms (sets the nonce cookie via `attach_cookie`)."""
    return str(_serializer(request).dumps([_nonce(request), _binding(request)]))


def attach_cookie(request: Request, response: Response) -> None:
    fresh: str | None = getattr(request.state, "csrf_new_nonce", None)
    if fresh:
        set_cookie(request, response, CSRF_COOKIE, fresh)


def verify(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not submitted:
        raise CsrfRejected("表单缺少安全校验码 / the form has no CSRF token")
    if not _NONCE.match(cookie):
        raise CsrfRejected("浏览器未携带安全校验 Cookie，请启用 Cookie 后刷新页面 / the CSRF cookie is missing")
    try:
        payload = _serializer(request).loads(submitted, max_age=MAX_AGE_SECONDS)
    except BadSignature:
        raise CsrfRejected("表单安全校验码无效或已过期，请刷新页面后重试 / "
                           "the CSRF token is invalid or expired") from None
    ok = (isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, str) for p in payload)
          and hmac.compare_digest(payload[0], cookie) and hmac.compare_digest(payload[1], _binding(request)))
    if not ok:
        raise CsrfRejected("表单与当前会话不匹配，请刷新页面后重试 / the form belongs to another session")


async def csrf_guard(request: Request) -> None:
    """Router-wide dependency: every unsafe request to a page must carry a valid token."""
    if request.method in SAFE_METHODS:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if not submitted:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        submitted = value if isinstance(value, str) else None
    verify(request, submitted)
