"""Loading data on the web: a resource's batches, the upload form, a batch's progress and report,
and its quarantined rows as CSV.

The upload is streamed to disk under `<home>/uploads`, the batch is recorded as running in the
request's unit of work (committed before the response), and the file is loaded by a background
task after the response; the browser is sent to the batch page, which polls a fragment every
second (htmx) until the batch has finished, then shows the report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from onceonly.accounts.actor import Actor
from onceonly.catalog.models import Resource
from onceonly.catalog.service import get_resource
from onceonly.db import Database
from onceonly.deps import DbSession
from onceonly.errors import AuthenticationRequired, Conflict, NotFound, PermissionDenied, PlatformError
from onceonly.ingest import repository as ingest_repo
from onceonly.ingest import service as ingest
from onceonly.ingest import uploads
from onceonly.ingest.models import Batch
from onceonly.ingest.quarantine import rejections_csv
from onceonly.ingest.readers import FORMATS
from onceonly.ingest.schemas import BatchReport, IngestOptions
from onceonly.settings import Settings
from onceonly.web.catalog_pages import Reader
from onceonly.web.csrf import csrf_guard
from onceonly.web.pages import is_htmx, redirect, render, render_error
from onceonly.web.staff import FormActor, city_time

log = logging.getLogger("onceonly.web.ingest")
router = APIRouter(dependencies=[Depends(csrf_guard)], include_in_schema=False)

MAX_SHEET = 100
PANEL_BATCHES = 10
MODES = ("upsert", "replace")
ENCODINGS = ("", "utf-8", "gb18030")  # "" = detect
ACCEPT = ",".join(FORMATS)
# Times are shown in China Standard Time (UTC+8, no daylight saving), the platform's users' clock.


# --- view models ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResourceRef:
    id: int
    code: str
    name: str
    title: str
    version: int
    status: str
    provider_id: int
    provider_name: str


def resource_ref(res: Resource) -> ResourceRef:
    return ResourceRef(id=res.id, code=res.code, name=res.name, title=res.title, version=res.version,
                       status=res.status, provider_id=res.provider_id, provider_name=res.provider.name)


@dataclass(frozen=True)
class Progress:
    read: int
    position: int | None
    total: int

    @property
    def percent(self) -> int | None:
        if self.position is None or self.total <= 0:
            return None
        return max(0, min(100, self.position * 100 // self.total))


@dataclass(frozen=True)
class BatchView:
    report: BatchReport
    size_text: str
    started: str
    finished: str
    duration: str
    progress: Progress | None

    @property
    def running(self) -> bool:
        return self.report.status == "running"


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{size} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover




def batch_view(report: BatchReport) -> BatchView:
    live = report.progress
    progress = None
    if report.status == "running":
        live = live or {}
        position = live.get("position")  # 0 while the reader cannot tell where it is in the file
        progress = Progress(read=int(live.get("read") or report.read or 0),
                            position=position if isinstance(position, int) and position > 0 else None,
                            total=int(live.get("bytes") or report.size or 0))
    seconds = report.duration_ms / 1000 if report.duration_ms is not None else None
    duration = "" if seconds is None else f"{seconds:.2f}" if seconds < 10 else f"{seconds:,.1f}"
    return BatchView(report=report, size_text=human_size(report.size), started=city_time(report.started_at),
                     finished=city_time(report.finished_at), duration=duration, progress=progress)


# --- permissions ------------------------------------------------------------------------------

def may_see_batches(actor: Actor, res: ResourceRef | Resource) -> bool:
    return actor.can("resource.edit", res.provider_id) or actor.can("audit.read")


def _batch_and_resource(session: Session, actor: Actor, batch_id: int) -> tuple[Batch, ResourceRef]:
    batch = ingest_repo.batch(session, batch_id)
    if batch is None:
        raise NotFound(f"batch {batch_id} not found", field="batch")
    res = resource_ref(get_resource(session, batch.resource_id))
    if not may_see_batches(actor, res):
        raise PermissionDenied("only the provider's stewards (and auditors) see its batches")
    return batch, res


def _uploadable(session: Session, actor: Actor, ref: str) -> ResourceRef:
    """The resource to load into: it must exist, be the actor's to edit and be published."""
    res = resource_ref(get_resource(session, ref))
    if not actor.can("resource.edit", res.provider_id):
        raise PermissionDenied(f"role {actor.role} may not load data into {res.code} (another department's)")
    if res.status != "published":
        raise Conflict(f"resource {res.code} v{res.version} is {res.status}; only a published resource takes data",
                       field="resource")
    return res


# --- a resource's batches ---------------------------------------------------------------------

@router.get("/catalog/resources/{ref:path}/batches")
def batches_page(ref: str, request: Request, session: DbSession, actor: Reader) -> Response:
    """The batch history of a resource (all its versions), with the upload action. For htmx (the
    resource page loads it as a panel) a fragment, empty for those who may not see batches."""
    htmx = is_htmx(request)
    try:
        res = resource_ref(get_resource(session, ref))
        if not may_see_batches(actor, res):
            raise PermissionDenied("only the provider's stewards (and auditors) see its batches")
    except PlatformError as exc:
        return HTMLResponse("", headers={"Vary": "Cookie, HX-Request"}) if htmx else render_error(request, exc, actor)
    batches = [batch_view(b) for b in ingest.history(session, str(res.id))]
    context = {"res": res, "batches": batches, "can_upload": actor.can("resource.edit", res.provider_id),
               "panel": htmx, "panel_limit": PANEL_BATCHES}
    if htmx:
        return render(request, "ingest/_panel.html", context, actor=actor)
    return render(request, "ingest/batches.html", context, actor=actor, nav="catalog")


# --- upload -----------------------------------------------------------------------------------

def _form_context(request: Request, res: ResourceRef, session: Session, *, mode: str = "upsert",
                  encoding: str = "", sheet: str = "", force: bool = False, resubmit_of: int | None = None,
                  error: str | None = None, error_detail: str | None = None) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    full = get_resource(session, res.id)
    fields = [(f.name, f.title, f.required, f.name in full.key_fields) for f in full.fields]
    return {"res": res, "fields": fields, "mode": mode, "encoding": encoding, "sheet": sheet, "force": force,
            "resubmit_of": resubmit_of, "error": error, "error_detail": error_detail, "accept": ACCEPT,
            "max_delete_percent": f"{settings.ingest_replace_max_delete_share:.0%}",
            "formats": " ".join(FORMATS)}


def _batch_number(value: str | None) -> int | str | None:
    """A form's optional batch number: None if empty, the number, or "bad"."""
    value = (value or "").strip()
    if not value:
        return None
    return int(value) if value.isdigit() and len(value) < 12 else "bad"


@router.get("/catalog/resources/{ref:path}/upload")
def upload_form(ref: str, request: Request, session: DbSession, actor: Reader, resubmit_of: str = "") -> Response:
    try:
        res = _uploadable(session, actor, ref)
        original = _batch_number(resubmit_of)
        if original == "bad":
            original = None
        if isinstance(original, int):
            batch = ingest_repo.batch(session, original)
            if batch is None or batch.resource_id != res.id:
                raise NotFound(f"batch {original} of resource {res.code} not found", field="resubmit_of")
    except PlatformError as exc:
        return render_error(request, exc, actor)
    context = _form_context(request, res, session, resubmit_of=original if isinstance(original, int) else None)
    return render(request, "ingest/upload.html", context, actor=actor, nav="catalog")


async def uploaded_file(request: Request) -> UploadFile | None:
    """The form's file, or None when none was chosen (browsers then send an empty part without a
    file name, which the form parser gives as an empty string)."""
    value = (await request.form()).get("file")
    return value if isinstance(value, UploadFile) and value.filename else None


@router.post("/catalog/resources/{ref:path}/upload")
def upload(ref: str, request: Request, background: BackgroundTasks, session: DbSession, actor: FormActor,
           file: Annotated[UploadFile | None, Depends(uploaded_file)], mode: Annotated[str, Form()] = "upsert",
           sheet: Annotated[str, Form()] = "", encoding: Annotated[str, Form()] = "",
           force: Annotated[str, Form()] = "", resubmit_of: Annotated[str, Form()] = "") -> Response:
    try:
        res = _uploadable(session, actor, ref)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    sheet = sheet.strip()
    original = _batch_number(resubmit_of)
    forced = mode == "replace" and force.lower() in ("1", "on", "true", "yes")
    name = uploads.safe_file_name(file.filename if file is not None else None)
    values: dict[str, Any] = {  # what the form shows again if something is wrong
        "mode": mode if mode in MODES else "upsert", "encoding": encoding if encoding in ENCODINGS else "",
        "sheet": sheet[:MAX_SHEET], "force": forced, "resubmit_of": original if isinstance(original, int) else None,
    }
    error = None
    if file is None or not file.filename:
        error = "no_file"
    elif Path(name).suffix.lower() not in FORMATS:
        error = "format"
    elif mode not in MODES:
        error = "mode"
    elif encoding not in ENCODINGS:
        error = "encoding"
    elif len(sheet) > MAX_SHEET:
        error = "sheet"
    elif original == "bad":
        error = "resubmit"
    if error is not None or file is None:
        context = _form_context(request, res, session, error=error or "no_file", **values)
        return render(request, "ingest/upload.html", context, actor=actor, status=422, nav="catalog")
    options = IngestOptions(mode=values["mode"], sheet=sheet or None, encoding=encoding or None, force=forced,
                            resubmit_of=values["resubmit_of"])
    path = uploads.save_upload(request.app.state.db, name, file.file)
    try:
        batch_id = ingest.start_batch(session, actor, res.id, name, path.stat().st_size, options)
    except PlatformError as exc:
        uploads.discard(path)
        session.rollback()
        if isinstance(exc, (PermissionDenied, AuthenticationRequired)):
            return render_error(request, exc, actor)
        context = _form_context(request, res, session, error="refused", error_detail=exc.message, **values)
        return render(request, "ingest/upload.html", context, actor=actor, status=exc.status, nav="catalog")
    except BaseException:
        uploads.discard(path)
        raise
    settings: Settings = request.app.state.settings
    # Runs after the response, i.e. after this request's unit of work (with the batch) committed.
    background.add_task(uploads.run_saved, request.app.state.db, actor, batch_id, path, options,
                        settings.ingest_replace_max_delete_share)
    return redirect(f"/batches/{batch_id}")


# --- a batch ----------------------------------------------------------------------------------

@router.get("/batches/{batch_id:int}")
def batch_page(batch_id: int, request: Request, session: DbSession, actor: Reader) -> Response:
    """Status and report of a batch. While it runs, htmx polls this address every second for the
    fragment (which stops asking once the batch has finished)."""
    try:
        batch, res = _batch_and_resource(session, actor, batch_id)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    context = {"b": batch_view(ingest.batch_report(session, batch)), "res": res,
               "can_edit": actor.can("resource.edit", res.provider_id),
               "shown_rows": ingest.REPORTED_REJECTIONS}
    if is_htmx(request):
        return render(request, "ingest/_batch.html", context, actor=actor)
    return render(request, "ingest/batch.html", context, actor=actor, nav="catalog")


@router.get("/batches/{batch_id:int}/rejections.csv")
def download_rejections(batch_id: int, request: Request, session: DbSession, actor: Reader) -> Response:
    """All quarantined rows of a batch as CSV (`_row`, `_problems`, then the file's columns),
    ready to correct and upload again as a resubmission."""
    try:
        _batch_and_resource(session, actor, batch_id)
    except PlatformError as exc:
        return render_error(request, exc, actor)
    db: Database = request.app.state.db

    def body() -> Any:
        with db.session() as s:  # its own session: the response streams after the request's has ended
            yield from (chunk.encode("utf-8") for chunk in rejections_csv(s, batch_id))

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="batch-{batch_id}-rejected.csv"',
        "Cache-Control": "no-store",
    })
