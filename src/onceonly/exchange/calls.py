"""One exchange call from start to finish, the same for every data-plane route:

1. authenticate the system: the key in a read-only transaction (metadata cached per process,
   snapshot.py); a signature in a short writing one, so a claimed nonce stays claimed whatever
   the answer;
2. the mode's work in one read-only transaction: `authorize` (grant, expiry, fields, whether
   today's quota is used up), the read, masking — the answer is built but not sent;
3. the audit writer's group commit: in one transaction with other calls' records it counts the
   call for the rate limit and its records against the quota (`enforcement.Charge`) and writes
   its audit record — or, if the count would pass a limit, the record of the 429 instead. Only
   once that transaction has committed does the answer (or the 429) go out;
4. a denial (any problem, 400 to 503) before step 3 is audited by the group writer too, then
   rendered as problem+json. Nothing of the call's data is in it.

Exports stream and so need several transactions; export.py uses the same pieces (`Context`)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from anyio import to_thread
from fastapi import Request
from fastapi.responses import Response
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from onceonly.audit import PURPOSE_HEADER, AuditUnavailable, append_call, append_call_async, request_digest
from onceonly.audit.service import entry
from onceonly.db import Database, utcnow
from onceonly.deps import client_ip
from onceonly.errors import NotFound, PlatformError
from onceonly.exchange import credentials, signing, snapshot
from onceonly.exchange.caller import check_signature, presented_key, request_target
from onceonly.exchange.enforcement import Charge, Permit, authorize
from onceonly.exchange.metrics import observe_call
from onceonly.exchange.models import Credential, System
from onceonly.exchange.schemas import SERVICE_CODE_RE
from onceonly.exchange.values import shown

log = logging.getLogger("onceonly.exchange")
JSON = "application/json"
QUOTA_HEADER = "X-OnceOnly-Quota-Remaining"


def purpose_of(request: Request) -> str | None:
    """The purpose header as text: UTF-8 sent raw (Starlette reads header bytes as Latin-1) or
    percent-encoded."""
    headers = request.headers
    raw = headers.get(PURPOSE_HEADER) if PURPOSE_HEADER in headers else None  # absent: no KeyError raised
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
    audited: bool = False  # a record of this call is committed
    counted_at_commit: bool = False  # the writer counts the call (Charge) instead of `permit`
    session: Session | None = None  # the call's read-only transaction (`handle`)
    credential: Credential | None = None

    def authenticate(self, session: Session) -> System:
        """The key in the call's read-only transaction (snapshot.py caches what it needs); a
        signature, whose nonce is claimed, in a writing one of its own."""
        request, now = self.call.request, utcnow()
        self.credential = credentials.authenticate(session, presented_key(request), now)
        system = self.credential.system
        self.org = system.org.code
        if signing.wanted(system, request.headers):
            with self.db.session(write=True) as writing:
                check_signature(writing, system, request, self.call.body, now)
        self.system = system
        return system

    def permit(self, session: Session) -> Permit:
        """`authorize` for every granted field (the modes narrow it themselves, telling an unknown
        field from an ungranted one). An unknown service is a 404 here: services are catalog
        metadata, listed to every department, not a secret."""
        assert self.system is not None
        code = self.call.service
        if not SERVICE_CODE_RE.match(code) or snapshot.service(session, code) is None:
            raise NotFound(f"service {shown(code)} not found", field="service")
        # A record lookup or a verify is not capped by the quota, so its Charge alone checks it.
        unread = self.counted_at_commit and self.call.mode in ("api", "verify")
        return authorize(session, self.system, code, self.call.mode, count=not self.counted_at_commit,
                         read_usage=not unread)

    def fields(self, *, status: int, records: int = 0, nbytes: int = 0,
               detail: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The audit record of this call (`append_call`'s fields)."""
        call = self.call
        return {"system": self.system.code if self.system is not None else "", "org": self.org,
                "service": call.service, "mode": call.mode, "status": status, "purpose": purpose_of(call.request),
                "request_digest": request_digest(call.request.method, call.target, call.body), "records": records,
                "nbytes": nbytes, "latency_ms": call.latency_ms(), "ip": client_ip(call.request), "detail": detail}

    def audit(self, *, status: int, records: int = 0, nbytes: int = 0, detail: Mapping[str, Any] | None = None,
              session: Session | None = None) -> int:
        """Audit the call: in `session`'s transaction (committed with it), else by the writer."""
        seq = append_call(self.db, **self.fields(status=status, records=records, nbytes=nbytes, detail=detail),
                          session=session)
        self.audited = session is None
        observe_call(self.call.service, self.call.mode, status, records, nbytes, self.call.latency_ms())
        return seq

    def deny(self, exc: BaseException) -> None:
        """Audit a denial after its transaction rolled back (never inside it: on SQLite the group
        writer would wait for the lock that transaction holds). A call already on record (the
        writer recorded a denial of its count) is not recorded twice."""
        if self.audited:
            return
        try:
            self.audit(status=_status(exc), detail=problem_detail(exc))
        except Exception:  # the denial still goes out (it carries no data); the failure is logged
            log.exception("could not audit a denied %s call of service %s", self.call.mode, self.call.service[:64])

    async def deny_async(self, exc: BaseException) -> None:
        """`deny` on the event loop: waits for the group commit without blocking the loop."""
        if self.audited:
            return
        status = _status(exc)
        try:
            await append_call_async(self.db, **self.fields(status=status, detail=problem_detail(exc)))
            self.audited = True
            observe_call(self.call.service, self.call.mode, status, 0, 0, self.call.latency_ms())
        except Exception:  # as in `deny`
            log.exception("could not audit a denied %s call of service %s", self.call.mode, self.call.service[:64])

    def respond(self, work: Callable[[Session, System], tuple[Permit, Answer]]) -> Prepared:
        """Step 2 of the module docstring for a mode whose answer is built in memory: the answer,
        ready to go out once step 3 (`run`) has committed its count and record."""
        assert self.system is not None and self.session is not None
        self.counted_at_commit = True
        permit, answer = work(self.session, self.system)
        return Prepared(self, permit, answer, Charge(permit, answer.records, utcnow()),
                        self.fields(status=answer.status, records=answer.records, nbytes=len(answer.content),
                                    detail=answer.detail))


@dataclass(eq=False)
class Prepared:
    """An answer waiting for its call to be counted and recorded by the audit writer."""

    ctx: Context
    permit: Permit
    answer: Answer
    charge: Charge
    record: dict[str, Any]  # the audit record's fields (`append_call`'s)

    @classmethod
    def settle(cls, conn: Connection, steps: Sequence[Prepared]) -> list[Mapping[str, Any] | None]:
        """The writer's step (audit.writer.Step): the group's calls counted (and their keys'
        "last used" stamps, when due); for each denied call, the record of its 429 instead."""
        for prepared in steps:
            cred = prepared.ctx.credential
            if cred is not None and credentials.touch_due(cred, prepared.charge.now):
                credentials.touch(conn, cred, prepared.charge.now)
        Charge.settle(conn, [p.charge for p in steps])
        return [None if p.charge.denial is None else
                entry("call", **{**p.record, "status": p.charge.denial.status, "records": 0, "nbytes": 0,
                                 "detail": problem_detail(p.charge.denial)}) for p in steps]

    def response(self) -> Response:
        """Once committed: the answer, or the charge's denial raised."""
        ctx, answer, denial = self.ctx, self.answer, self.charge.denial
        ctx.audited = True
        latency = self.record["latency_ms"]
        if denial is not None:
            observe_call(ctx.call.service, ctx.call.mode, denial.status, 0, 0, latency)
            raise denial
        observe_call(ctx.call.service, ctx.call.mode, answer.status, answer.records, len(answer.content), latency)
        answer.headers[QUOTA_HEADER] = str(max(0, self.permit.daily_quota - self.charge.total))
        return Response(answer.content, status_code=answer.status, media_type=answer.media_type,
                        headers=answer.headers)


def _status(exc: BaseException) -> int:
    return exc.status if isinstance(exc, PlatformError) else 500


def problem_detail(exc: BaseException) -> dict[str, Any]:
    """What the audit record of a denial says of it (never any of the call's data)."""
    if isinstance(exc, PlatformError):
        return {"problem": exc.code, "field": exc.field, "reason": exc.message[:300]}
    return {"problem": "internal", "reason": type(exc).__name__}


def handle(ctx: Context, work: Callable[[Context], Response | Prepared], *,
           on_loop: bool = False) -> Response | Prepared:
    """Authenticate, run `work`, and audit whatever denial comes out of either — unless it runs
    `on_loop` (`run` then audits the denial without blocking the loop, and the event loop's
    thread keeps its connection between calls)."""
    try:
        with ctx.db.reading(on_loop=on_loop) as session:
            ctx.session = session
            ctx.authenticate(session)
            return work(ctx)
    except AuditUnavailable:
        raise  # the record could not be written: nothing more to write it with
    except Exception as exc:
        if not on_loop:
            ctx.deny(exc)
        raise


async def run(db: Database, call: Call, work: Callable[[Context], Response | Prepared]) -> Response:
    """The whole call: steps 1-2, then step 3 awaited on the event loop (so a call waiting for
    the group commit holds no thread), then the answer or the denial.

    Where the database answers from this host (`Database.reads_on_loop`: SQLite, PostgreSQL
    over a unix socket or loopback) steps 1-2 run on the event loop itself: they only read and
    take well under a millisecond, less than a hop to a worker thread and back — except a
    signed call, which claims its nonce in a writing transaction, and an export, which streams;
    those run in a worker thread, as every call does when the database is across the network,
    whose round trips must not hold the loop. A read on the loop that waits (PostgreSQL: a lock
    held by a schema change, a slow statement) gives up after a moment and the call runs again
    in a worker thread. A denial is audited without blocking the loop either way."""
    ctx = Context(db, call)
    try:
        if db.loop_reads_now() and call.mode != "bulk" and not signing.sent(call.request.headers):
            try:
                outcome = handle(ctx, work, on_loop=True)
            except Exception as exc:
                if not db.loop_gave_up(exc):
                    raise
                ctx = Context(db, call)  # it only read: run it again there, afresh
                outcome = await to_thread.run_sync(handle, ctx, work)
        else:
            outcome = await to_thread.run_sync(handle, ctx, work)  # audits its denials in that thread
        if isinstance(outcome, Response):
            return outcome
        await append_call_async(db, **outcome.record, step=outcome)
        return outcome.response()
    except AuditUnavailable:
        raise
    except Exception as exc:
        await ctx.deny_async(exc)
        raise
