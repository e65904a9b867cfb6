"""Ingest API: upload a file as a batch (processed in the background), poll it, list a
resource's batches, read and download quarantined rows."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, Query, Request, UploadFile
from fastapi.responses import StreamingResponse

from onceonly.catalog.schemas import Page
from onceonly.catalog.service import get_resource
from onceonly.db import Database
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import PermissionDenied, ValidationFailed
from onceonly.ingest import repository as repo
from onceonly.ingest import service, uploads
from onceonly.ingest.quarantine import rejections_csv
from onceonly.ingest.schemas import BatchReport, IngestOptions, QuarantinedRow

router = APIRouter(tags=["ingest"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"}, 403: {"description": "Not a steward of the provider"},
    404: {"description": "Not found"}, 409: {"description": "Resource not published"},
    422: {"description": "Invalid options (problem+json names the field)"},
}


def _check_reader(session: DbSession, actor: CurrentActor, batch_id: int) -> Any:
    batch = repo.batch(session, batch_id) if 0 < batch_id < 2**63 else None  # the database's integer range
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
    format: Annotated[str | None, Form(max_length=10, description="csv, tsv, xlsx, xls, jsonl or json "
                                                                  "(default: from the file name)")] = None,
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
    options = IngestOptions.model_validate({"mode": mode, "sheet": sheet, "encoding": encoding, "format": format,
                                            "mapping": explicit, "force": force, "resubmit_of": resubmit_of})
    path = uploads.save_upload(db, file.filename or "", file.file)
    try:
        batch_id = service.start_batch(session, actor, ref, path.name, path.stat().st_size, options)
    except BaseException:
        uploads.discard(path)
        raise
    max_share = request.app.state.settings.ingest_replace_max_delete_share
    # Runs after the response, i.e. after this request's transaction (with the batch) committed.
    background.add_task(uploads.run_saved, db, actor, batch_id, path, options, max_share)
    return service.batch_report(session, service.get_batch(session, batch_id))


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
