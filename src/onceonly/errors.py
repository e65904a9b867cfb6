"""One error hierarchy, rendered in one place (app.py) as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Any


class PlatformError(Exception):
    status: int = 400
    code: str = "platform-error"
    title: str = "Request failed"

    def __init__(self, message: str, *, field: str | None = None, status: int | None = None,
                 errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.errors = errors or []
        if status is not None:
            self.status = status

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "detail": self.message,
        }
        if self.field:
            body["field"] = self.field
        if self.errors:
            body["errors"] = self.errors
        return body


class ConfigError(PlatformError):
    code, title, status = "config", "Invalid configuration", 500


class ValidationFailed(PlatformError):
    code, title, status = "validation", "Invalid input", 422


class NotFound(PlatformError):
    code, title, status = "not-found", "Not found", 404


class Conflict(PlatformError):
    code, title, status = "conflict", "Conflict", 409


class AuthenticationRequired(PlatformError):
    code, title, status = "unauthenticated", "Authentication required", 401


class PermissionDenied(PlatformError):
    code, title, status = "forbidden", "Permission denied", 403


class AccountLocked(PlatformError):
    code, title, status = "locked", "Account locked", 423


class SchemaChangeRefused(Conflict):
    code, title = "schema-change", "Schema change refused"
