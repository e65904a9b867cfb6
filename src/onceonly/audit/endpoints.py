"""Auditor API: read, export and verify the audit log. Read-only by construction — there is
no route that changes or deletes a record; only auditors and the security admin may read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from onceonly.accounts.actor import Actor
from onceonly.audit import repository as repo
from onceonly.audit.export import MEDIA_TYPES, chunks
from onceonly.audit.keys import SIGNER_ID, ensure_keypair, load_public_key
from onceonly.audit.schemas import CODE_PATTERN, AuditFilter, Kind, PublicKeyOut, RecordPage, VerifyReport
from onceonly.audit.verify import verify_database
from onceonly.db import Database
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import PermissionDenied, ValidationFailed

router = APIRouter(prefix="/audit", tags=["audit"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"}, 403: {"description": "Not an auditor or security admin"},
    422: {"description": "Invalid query parameter (problem+json names it)"},
}


def auditor(actor: CurrentActor) -> Actor:
    """三员分立: the audit trail is read by the auditor (and the security admin), nobody else."""
    if not actor.can("audit.read"):
        raise PermissionDenied("only auditors and the security admin read the audit log")
    return actor


Auditor = Annotated[Actor, Depends(auditor)]


def audit_filter(
    since: Annotated[datetime | None, Query(description="records at or after (ISO 8601; no offset = UTC)")] = None,
    until: Annotated[datetime | None, Query(description="records before (ISO 8601; no offset = UTC)")] = None,
    system: Annotated[str | None, Query(max_length=64, pattern=CODE_PATTERN, description="caller system code")]
    = None,
    service: Annotated[str | None, Query(max_length=64, pattern=CODE_PATTERN, description="service code")] = None,
    kind: Annotated[Kind | None, Query(description="call, staff or delivery (the end of an export)")] = None,
    status: Annotated[int | None, Query(ge=100, le=599, description="HTTP status of the call")] = None,
) -> AuditFilter:
    since, until = _utc(since, "since"), _utc(until, "until")
    if since is not None and until is not None and until <= since:
        raise ValidationFailed("until must be after since", field="until")
    return AuditFilter(since=since, until=until, system=system, service=service, kind=kind, status=status)


def _utc(value: datetime | None, name: str) -> datetime | None:
    """The instant in UTC; one the calendar cannot hold in UTC (0001-01-01T00:00+08:00) is a 422."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationFailed(f"{name} is out of range", field=name) from None


Filter = Annotated[AuditFilter, Depends(audit_filter)]


@router.get("/records", response_model=RecordPage, responses=ERRORS,
            summary="Audit records in seq order, filtered; keyset pages (?after=SEQ&limit=N)")
def list_records(session: DbSession, actor: Auditor, f: Filter,
                 after: Annotated[int, Query(ge=0, description="return records with seq greater than this")] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RecordPage:
    items = repo.page(session, f, after, limit)
    return RecordPage(items=items, next_after=items[-1].seq if len(items) == limit else None, limit=limit)


@router.get("/export", responses=ERRORS, response_class=StreamingResponse,
            summary="All matching records as CSV or JSON Lines, streamed")
def export(request: Request, actor: Auditor, f: Filter,
           format: Annotated[Literal["csv", "jsonl"], Query(description="csv or jsonl")] = "jsonl",
           ) -> StreamingResponse:
    db: Database = request.app.state.db

    def body() -> Iterator[bytes]:
        with db.session() as s:  # its own session: the response streams after the request's ends
            yield from (chunk.encode("utf-8") for chunk in chunks(repo.iter_rows(s, f), format))

    name = f"audit-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.{format}"
    return StreamingResponse(body(), media_type=MEDIA_TYPES[format],
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/verify", response_model=VerifyReport, responses=ERRORS,
            summary="Recompute every hash, check the chain, the head and every checkpoint signature")
def verify(request: Request, actor: Auditor) -> VerifyReport:
    db: Database = request.app.state.db
    return verify_database(db, load_public_key(db.settings.home))


@router.get("/public-key", response_model=PublicKeyOut, responses=ERRORS,
            summary="The platform's SM2 public key that signs checkpoints and retention anchors")
def public_key(request: Request, actor: Auditor) -> PublicKeyOut:
    db: Database = request.app.state.db
    key = ensure_keypair(db.settings.home).public
    return PublicKeyOut(signer_id=SIGNER_ID.decode(), key_id=key.key_id, public_key_hex=key.hex, pem=key.pem)
