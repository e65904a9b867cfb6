"""审计日志 for auditors: browse and filter the tamper-evident audit log (keyset pages), export
what the filter matches through the auditor API (CSV or JSON Lines), and verify the chain.

Times in the form are the city's (UTC+8), as everywhere in the console; the export links pass
them to the API with their offset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from onceonly.accounts.actor import Actor
from onceonly.audit import repository as audit_repo
from onceonly.audit.keys import load_public_key
from onceonly.audit.schemas import AuditFilter, AuditRecordOut
from onceonly.audit.verify import verify_database
from onceonly.db import Database
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import PermissionDenied
from onceonly.web.csrf import csrf_guard
from onceonly.web.pages import is_htmx, render
from onceonly.web.staff import CITY, city_time, validation_errors

router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

PAGE_SIZE = 50
FILTER_FIELDS = ("since", "until", "system", "service", "kind", "status")


def audit_reader(actor: CurrentActor) -> Actor:
    """三员分立: the audit trail is for the auditor (and the security admin) only."""
    if not actor.can("audit.read"):
        raise PermissionDenied("only auditors and the security admin read the audit log")
    return actor


AuditReader = Annotated[Actor, Depends(audit_reader)]


@dataclass(frozen=True)
class Row:
    r: AuditRecordOut
    time: str
    who: str
    what: str


def city_instant(value: str, *, end: bool = False) -> datetime | None:
    """A form's date or date-and-time on the city's clock; a bare date of `until` means the
    whole day (until the next midnight). Raises ValueError if it is neither."""
    value = value.strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time(0), CITY)
            return (moment + timedelta(days=1) if end else moment).astimezone(UTC)
        parsed = datetime.fromisoformat(value)
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=CITY)).astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01 in UTC+8 is before year 1 in UTC
        raise ValueError(f"{value} is out of range") from None


def parse_filter(since: str, until: str, system: str, service: str, kind: str,
                 status: str) -> tuple[AuditFilter | None, dict[str, str]]:
    errors: dict[str, str] = {}
    values: dict[str, Any] = {"system": system.strip() or None, "service": service.strip() or None,
                              "kind": kind.strip() or None}
    for name, raw, end in (("since", since, False), ("until", until, True)):
        try:
            values[name] = city_instant(raw[:40], end=end)
        except ValueError:
            errors[name] = "bad_time"
    raw_status = status.strip()
    if raw_status:
        values["status"] = int(raw_status) if raw_status.isdigit() and len(raw_status) <= 3 else -1
    if values.get("since") and values.get("until") and values["until"] <= values["since"]:
        errors["until"] = "until_before_since"
    try:
        f = AuditFilter.model_validate(values)
    except ValidationError as exc:
        errors = {**validation_errors(exc, FILTER_FIELDS), **errors}
        return None, errors
    return (None, errors) if errors else (f, errors)


def api_query(f: AuditFilter) -> str:
    """The filter as auditor API parameters (times with their offset)."""
    params = [(k, v.isoformat() if isinstance(v, datetime) else str(v))
              for k, v in f.model_dump(exclude_none=True).items()]
    return urlencode(params)


@router.get("/audit")
def audit_page(request: Request, session: DbSession, actor: AuditReader, since: str = "", until: str = "",
               system: str = "", service: str = "", kind: str = "", status: str = "", after: str = "") -> Response:
    form = {"since": since[:40], "until": until[:40], "system": system[:64], "service": service[:64],
            "kind": kind[:8], "status": status[:8]}
    f, errors = parse_filter(**form)
    start = int(after) if after.isdigit() and len(after) < 19 else 0
    rows: list[Row] = []
    next_after = None
    if f is not None:
        records = audit_repo.page(session, f, start, PAGE_SIZE)
        rows = [Row(r, city_time(r.time), r.system or r.username or "", r.mode or r.action or "") for r in records]
        next_after = records[-1].seq if len(records) == PAGE_SIZE else None
    query = [(k, v) for k, v in form.items() if v]
    context = {"rows": rows, "form": form, "errors": errors, "after": start, "next_after": next_after,
               "page_query": urlencode(query), "api_query": api_query(f) if f is not None else ""}
    return render(request, "audit/log.html", context, actor=actor, status=422 if errors else 200, nav="audit")


@router.get("/audit/verify")
def verify_page(request: Request, actor: AuditReader) -> Response:
    """Recompute every hash and check every link and signature (what `onceonly audit verify` does)."""
    db: Database = request.app.state.db
    report = verify_database(db, load_public_key(db.settings.home))
    context = {"report": report}
    if is_htmx(request):
        return render(request, "audit/_verify.html", context, actor=actor)
    return render(request, "audit/verify.html", context, actor=actor, nav="audit")
