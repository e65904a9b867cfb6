"""Ingest API: upload a file as a batch (processed in the background), poll it, list a
resource's batches, read and download quarantined rows."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from onceonly.catalog.schemas import Page
from onceonly.catalog.service import get_resource
from onceonly.db import Database
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import PermissionDenied, PlatformError, ValidationFailed
from onceonly.ingest import repository as repo
from onceonly.ingest import service
from onceonly.ingest.quarantine import rejections_csv
from onceonly.ingest.schemas import BatchReport, IngestOptions, QuarantinedRow

router = APIRouter(tags=["ingest"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"}, 403: {"description": "Not a steward of the provider"},
    404: {"description": "Not found"}, 409: {"description": "Resource not published"},
    422: {"description": "Invalid options (problem+json names the field)"},
}
UPLOAD_CHUNK = 1 << 20
MAX_NAME_BYTES = 200  # under every file system's 255-byte limit, and the batch's file_name column


def _check_reader(session: DbSession, actor: CurrentActor, batch_id: int) -> Any:
    batch = repo.batch(session, batch_id)
    if batch is None:
        from onceonly.errors import NotFound

        raise NotFound(f"batch {batch_id} not found", field="batch")
    res = get_resource(session, batch.resource_id)
    if not (actor.can("resource.edit", res.provider_id) or actor.can("audit.read")):
        raise PermissionDenied("only the provider's stewards (and auditors) see its batches")
    return batch


@router.post("/resources/{ref:path}/batches", response_model=BatchReport, status_code=202, responses=ERRORS,
             summary="Upload a file into a published resource; it is processed in the background")
def upload(
    ref: str, request: Request, background: BackgroundTasks, session: DbSession, actor: CurrentActor,
    file: Annotated[UploadFile, File(description="CSV/TSV, XLSX/XLS, JSON Lines or JSON array")],
    mode: Annotated[str, Form(pattern="^(upsert|replace)$")] = "upsert",
    sheet: Annotated[str | None, Form(max_length=100)] = None,
    encoding: Annotated[str | None, Form(max_length=40)] = None,
    mapping: Annotated[str | None, Form(description='JSON object {"source column": "field"}')] = None,
    force: Annotated[bool, Form()] = False,
    resubmit_of: Annotated[int | None, Form()] = None,
) -> BatchReport:
    db: Database = request.app.state.db
    explicit = None
    if mapping:
        try:
            explicit = json.loads(mapping)
        except json.JSONDecodeError as exc:
            raise ValidationFailed(f"mapping: not JSON ({exc.msg})", field="mapping") from None
    options = IngestOptions.model_validate({"mode": mode, "sheet": sheet, "encoding": encoding,
                                            "mapping": explicit, "force": force, "resubmit_of": resubmit_of})
    name = safe_file_name(file.filename)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=_uploads(db)))
    path = folder / name
    try:
        with path.open("wb") as out:  # streamed to disk: bounded memory whatever the size
            shutil.copyfileobj(file.file, out, UPLOAD_CHUNK)
        batch_id = service.start_batch(session, actor, ref, name, path.stat().st_size, options)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    max_share = request.app.state.settings.ingest_replace_max_delete_share
    # Runs after the response, i.e. after this request's transaction (with the batch) committed.
    background.add_task(_run, db, actor, batch_id, path, options, max_share)
    return service.batch_report(session, service._get_batch(session, batch_id))


def safe_file_name(raw: str | None) -> str:
    """The client's file name reduced to one harmless path component: the last part after any
    slash or backslash (browsers may send C:\\...\\x.csv), no control characters, never `.` or
    `..`, at most MAX_NAME_BYTES bytes with the suffix (which picks the reader) kept."""
    name = (raw or "").replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    if not name.strip("."):
        return "upload"
    if len(name.encode()) > MAX_NAME_BYTES:
        stem, suffix = os.path.splitext(name)
        suffix = suffix if len(suffix.encode()) <= 16 else ""
        stem = stem.encode()[: MAX_NAME_BYTES - len(suffix.encode())].decode("utf-8", "ignore")
        name = stem + suffix
    return name


def _uploads(db: Database) -> Path:
    folder = db.settings.home / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run(db: Database, actor: Any, batch_id: int, path: Path, options: IngestOptions, max_share: float) -> None:
    """Background work: the outcome (committed or failed with its reason) is in the batch record."""
    try:
        service.ingest_file(db, actor, 0, path, options, batch_id=batch_id, max_delete_share=max_share)
    except PlatformError:
        pass  # recorded on the batch as failed, with the reason
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


@router.get("/batches/{batch_id}", response_model=BatchReport, responses=ERRORS,
            summary="A batch's report, with live progress while it runs")
def get_batch(batch_id: int, session: DbSession, actor: CurrentActor) -> BatchReport:
    return service.batch_report(session, _check_reader(session, actor, batch_id))


@router.get("/resources/{ref:path}/batches", response_model=list[BatchReport], responses=ERRORS,
            summary="A resource's batch history, newest first")
def list_batches(ref: str, session: DbSession, actor: CurrentActor) -> list[BatchReport]:
    res = get_resource(session, ref)
    if not (actor.can("resource.edit", res.provider_id) or actor.can("audit.read")):
        raise PermissionDenied("only the provider's stewards (and auditors) see its batches")
    return service.history(session, ref)


@router.get("/batches/{batch_id}/rejections", response_model=Page[QuarantinedRow], responses=ERRORS,
            summary="Quarantined rows of a batch with every rule each failed")
def list_rejections(batch_id: int, session: DbSession, actor: CurrentActor,
                    offset: Annotated[int, Query(ge=0)] = 0,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Page[QuarantinedRow]:
    _check_reader(session, actor, batch_id)
    rows, total = repo.rejections(session, batch_id, offset, limit)
    items = [QuarantinedRow(row=r.row_number, raw=r.raw, problems=r.problems, resolved_by=r.resolved_by)
             for r in rows]
    return Page[QuarantinedRow](items=items, total=total, offset=offset, limit=limit)


@router.get("/batches/{batch_id}/rejections.csv", responses=ERRORS, response_class=StreamingResponse,
            summary="Quarantined rows as CSV, ready to correct and resubmit")
def download_rejections(batch_id: int, request: Request, actor: CurrentActor,
                        session: DbSession) -> StreamingResponse:
    _check_reader(session, actor, batch_id)
    db: Database = request.app.state.db

    def body() -> Any:
        with db.session() as s:  # its own session: the response streams after the request's ends
            yield from (chunk.encode("utf-8") for chunk in rejections_csv(s, batch_id))

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}-rejected.csv"'})
