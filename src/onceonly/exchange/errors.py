"""Exchange denials. Each says why in words a calling system can act on, and names nothing
but the caller's own request: no data, no other system, no other grant."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from onceonly.errors import AuthenticationRequired, PlatformError


class CallerRejected(AuthenticationRequired):
    """The system could not be authenticated (key or signature)."""

    code, title = "exchange-unauthenticated", "System not authenticated"


class ExchangeDenied(PlatformError):
    code, title, status = "exchange-denied", "Exchange call denied", 403


class GrantMissing(ExchangeDenied):
    code, title = "grant-missing", "No grant"


class GrantRevoked(GrantMissing):
    code, title = "grant-revoked", "Grant revoked"


class GrantExpired(ExchangeDenied):
    code, title = "grant-expired", "Grant expired"


class FieldNotGranted(ExchangeDenied):
    code, title = "field-not-granted", "Field not granted"


class ModeNotOffered(ExchangeDenied):
    code, title = "mode-not-offered", "Mode not offered"


class ServiceUnavailable(ExchangeDenied):
    code, title = "service-unavailable", "Service not available"


class Throttled(PlatformError):
    """429 with Retry-After (seconds), in the header and in the problem body."""

    code, title, status = "throttled", "Too many requests", 429

    def __init__(self, message: str, *, retry_after: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = max(1, int(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}

    def problem(self) -> dict[str, Any]:
        return {**super().problem(), "retry_after": self.retry_after}


class RateLimited(Throttled):
    code, title = "rate-limited", "Rate limit reached"


class QuotaExceeded(Throttled):
    code, title = "quota-exceeded", "Daily quota used up"


async def throttled_problem(request: Request, exc: Exception) -> Response:
    """problem+json with the Retry-After header (the generic renderer sets no headers)."""
    assert isinstance(exc, Throttled)
    return JSONResponse(exc.problem(), status_code=exc.status, headers=exc.headers,
                        media_type="application/problem+json")
