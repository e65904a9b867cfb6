"""Audit: the tamper-evident log of exchange calls and of staff actions on exchange services,
grants and credentials — SM3 hash chain, SM2-signed checkpoints, group-committed writes.

What other domains call:

- ``append_call(db, *, system, org, service, mode, status, …, session=None) -> seq``
  (writer.py): audits an exchange call; returns once the record is committed. Pass the
  request's session when the request writes in its own transaction.
- ``record_staff_action(session, *, actor, action, target, detail=None) -> seq`` (service.py):
  audits a staff action in the caller's transaction.
- ``request_digest(method, target, body)`` and ``PURPOSE_HEADER`` for the call's fields.
"""

from __future__ import annotations

PURPOSE_HEADER = "X-OnceOnly-Purpose"
"""Request header carrying the purpose or case number (用途/案件编号) of an exchange call."""

from onceonly.audit.canonical import request_digest  # noqa: E402
from onceonly.audit.service import AuditUnavailable, record_staff_action  # noqa: E402
from onceonly.audit.writer import append_call, append_call_async, writer_for  # noqa: E402

__all__ = ["PURPOSE_HEADER", "AuditUnavailable", "append_call", "append_call_async", "record_staff_action",
           "request_digest", "writer_for"]
