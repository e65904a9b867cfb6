"""One exchange call from start to finish, the same for every data-plane route:

1. authenticate the system (`exchange_caller`: key, then signature) in a short transaction of
   its own, so a claimed nonce stays claimed whatever the answer;
2. the mode's work in one writing transaction: `authorize` (counts the call for the rate
   limit), the read, masking; then `record_usage` (the quota) and the audit record, which on
   SQLite goes into this very transaction (see `append_call`'s `session=`) — so the answer,
   its counting and its record commit together, before the response;
3. a denial (any problem, 400 to 503) rolls that transaction back and is audited afterwards
   by the group writer, then rendered as problem+json. Nothing of the call's data is in it.

Exports stream and so need several transactions; export.py uses the same pieces (`Context`)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from onceonly.audit import PURPOSE_HEADER, AuditUnavailable, append_call, request_digest
from onceonly.db import Database
from onceonly.deps import client_ip
from onceonly.errors import NotFound, PlatformError
from onceonly.exchange import repository as repo
from onceonly.exchange.caller import exchange_caller, request_target
from onceonly.exchange.enforcement import Permit, authorize, record_usage
from onceonly.exchange.metrics import observe_call
from onceonly.exchange.models import System
from onceonly.exchange.schemas import SERVICE_CODE_RE
from onceonly.exchange.values import shown

log = logging.getLogger("onceonly.exchange")
JSON = "application/json"
QUOTA_HEADER = "X-OnceOnly-Quota-Remaining"


def purpose_of(request: Request) -> str | None:
    """The purpose header as text: UTF-8 sent raw (Starlette reads header bytes as Latin-1) or
    percent-encoded."""
    raw = request.headers.get(PURPOSE_HEADER)
    if not raw:
        return None
    with contextlib.suppress(UnicodeError):
        raw = raw.encode("latin-1").decode("utf-8")
    return unquote(raw).strip() or None


@dataclass
class Call:
    """What one call is, taken from the request before the work leaves the event loop."""

    request: Request
    service: str
    mode: str
    body: bytes = b""
    started: float = field(default_factory=time.perf_counter)

    @property
    def target(self) -> str:
        return request_target(self.request)

    def latency_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


@dataclass
class Answer:
    """A mode's answer before it goes out: the body (so its size is audited), the records it
    counts against the quota, and what the audit record's detail should say."""

    content: bytes
    records: int
    status: int = 200
    media_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    detail: dict[str, Any] = field(default_factory=dict)


def dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class Context:
    """The call being handled: who called (once authenticated) and whether it is audited yet."""

    db: Database
    call: Call
    system: System | None = None
    org: str | None = None
    audited: bool = False

    def authenticate(self) -> System:
        with self.db.session(write=True) as session:
            system = exchange_caller(self.call.request, session, self.call.body)
            self.org = system.org.code
        self.system = system
        return system

    def permit(self, session: Session) -> Permit:
        """`authorize` for every granted field (the modes narrow it themselves, telling an unknown
        field from an ungranted one). An unknown service is a 404 here: services are catalog
        metadata, listed to every department, not a secret."""
        assert self.system is not None
        code = self.call.service
        if not SERVICE_CODE_RE.match(code) or repo.service_by_code(session, code) is None:
            raise NotFound(f"service {shown(code)} not found", field="service")
        return authorize(session, self.system, code, self.call.mode)

    def audit(self, *, status: int, records: int = 0, nbytes: int = 0, detail: Mapping[str, Any] | None = None,
              session: Session | None = None) -> int:
        call = self.call
        seq = append_call(
            self.db, system=self.system.code if self.system is not None else "", org=self.org,
            service=call.service, mode=call.mode, status=status, purpose=purpose_of(call.request),
            request_digest=request_digest(call.request.method, call.target, call.body), records=records,
            nbytes=nbytes, latency_ms=call.latency_ms(), ip=client_ip(call.request), detail=detail,
            session=session)
        self.audited = True
        observe_call(call.service, call.mode, status, records, nbytes, call.latency_ms())
        return seq

    def deny(self, exc: BaseException) -> None:
        """Audit a denial after its transaction rolled back (never inside it: on SQLite the group
        writer would wait for the lock that transaction holds). A record already committed for
        this call (PostgreSQL, whose writer commits on its own) is not doubled."""
        if self.audited and not self.db.is_sqlite:
            return
        if isinstance(exc, PlatformError):
            status, detail = exc.status, {"problem": exc.code, "field": exc.field, "reason": exc.message[:300]}
        else:
            status, detail = 500, {"problem": "internal", "reason": type(exc).__name__}
        try:
            self.audit(status=status, detail=detail)
        except Exception:  # the denial still goes out (it carries no data); the failure is logged
            log.exception("could not audit a denied %s call of service %s", self.call.mode, self.call.service[:64])

    def respond(self, work: Callable[[Session, System], tuple[Permit, Answer]]) -> Response:
        """Steps 2 and 3 of the module docstring for a mode whose answer is built in memory."""
        assert self.system is not None
        with self.db.session(write=True) as session:
            permit, answer = work(session, self.system)
            total = record_usage(session, permit, answer.records)
            answer.headers[QUOTA_HEADER] = str(max(0, permit.daily_quota - total))
            self.audit(status=answer.status, records=answer.records, nbytes=len(answer.content),
                       detail=answer.detail, session=session)
        return Response(answer.content, status_code=answer.status, media_type=answer.media_type,
                        headers=answer.headers)


def handle(db: Database, call: Call, work: Callable[[Context], Response]) -> Response:
    """Authenticate, run `work`, and audit whatever denial comes out of either."""
    ctx = Context(db, call)
    try:
        ctx.authenticate()
        return work(ctx)
    except AuditUnavailable:
        raise  # the record could not be written: nothing more to write it with
    except Exception as exc:
        ctx.deny(exc)
        raise


def answer(db: Database, call: Call, work: Callable[[Context, Session, System], tuple[Permit, Answer]]) -> Response:
    """`handle` for a mode answered in one transaction."""
    return handle(db, call, lambda ctx: ctx.respond(lambda session, system: work(ctx, session, system)))
