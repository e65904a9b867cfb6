"""Denials particular to the data plane (the enforcement denials are in errors.py). Like them,
each says what was wrong with the caller's own request and carries no data."""

from __future__ import annotations

from onceonly.errors import NotFound, PlatformError


class RequestInvalid(PlatformError):
    """A query parameter, cursor, key or body the data plane cannot run: 400 naming it and the rule."""

    code, title, status = "invalid-request", "Invalid request", 400


class BatchTooLarge(PlatformError):
    code, title, status = "batch-too-large", "Request too large", 413


class RecordNotFound(NotFound):
    """No live record with that key within the grant: absent, deleted and filtered out look alike."""

    code, title = "record-not-found", "No such record"
