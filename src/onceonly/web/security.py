"""Browser-facing hardening: security headers on every page and the cookie attributes."""

from __future__ import annotations

from typing import Literal

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onceonly.settings import Settings

# Nothing is loaded from anywhere but this site: no CDN, no inline script or style.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}
# The API (JSON) and the interactive API docs (which load Swagger UI from a CDN) are not pages.
NOT_PAGES = ("/api/", "/docs", "/redoc", "/openapi.json")


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every response outside NOT_PAGES (pure ASGI, streams untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or str(scope.get("path", "")).startswith(NOT_PAGES):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def cookie_secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.cookie_secure == "always" or (
        settings.cookie_secure == "auto" and request.url.scheme == "https"
    )


def set_cookie(request: Request, response: Response, name: str, value: str, *,
               max_age: int | None = None, samesite: Literal["lax", "strict"] = "lax") -> None:
    """HttpOnly, SameSite=Lax, Path=/ and Secure per `settings.cookie_secure`."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite=samesite,
                        secure=cookie_secure(request))


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=cookie_secure(request))


def safe_next(value: str | None, default: str = "/") -> str:
    """Only a local absolute path may be a redirect target (no `//host`, no scheme, no `\\`)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 32 for c in value):
        return default
    return value
