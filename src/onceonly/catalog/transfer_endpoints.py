"""Catalog transfer API: the catalog out and in as a Frictionless Data Package and as the stewards'
Excel template. Imports are all or nothing: every resource is checked before the first write, and
the request's transaction commits only when the endpoint returns."""

from __future__ import annotations

from io import BytesIO
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog import service
from onceonly.catalog.datapackage import Imported, build_descriptor, import_descriptor
from onceonly.catalog.excel_template import import_workbook, write_template
from onceonly.deps import CurrentActor, DbSession

router = APIRouter(tags=["catalog"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"}, 403: {"description": "Role may not edit a provider's resources"},
    404: {"description": "Resource not found"},
    422: {"description": "Invalid input: problem+json `errors` lists every problem with its path "
                         "(JSON path, or sheet/row/column)"},
}


PublishFlag = Annotated[bool, Query(description="Publish the imported drafts too")]


class ImportedOut(BaseModel):
    name: str
    code: str
    version: int
    status: str
    action: Literal["created", "updated", "new_version", "unchanged"]


def _finish(session: Session, actor: Actor, done: list[Imported], publish: bool) -> list[ImportedOut]:
    if publish:  # like `onceonly catalog import --publish`
        for i in done:
            if i.resource.status == "draft":
                service.publish_resource(session, actor, i.resource)
    return [ImportedOut(name=i.resource.name, code=i.resource.code, version=i.resource.version,
                        status=i.resource.status, action=i.action) for i in done]


@router.get("/catalog/datapackage", responses=ERRORS,
            summary="The catalog as a Frictionless Data Package descriptor (datapackage.json)")
def get_datapackage(session: DbSession, actor: CurrentActor) -> dict[str, Any]:
    actor.require("catalog.read")
    return build_descriptor(session)


@router.post("/catalog/datapackage", response_model=list[ImportedOut], responses=ERRORS,
             summary="Import resources from a Data Package descriptor (all or nothing)")
def post_datapackage(
    descriptor: Annotated[dict[str, Any], Body(description="A datapackage.json descriptor")],
    session: DbSession, actor: CurrentActor, publish: PublishFlag = False,
) -> list[ImportedOut]:
    return _finish(session, actor, import_descriptor(session, actor, descriptor), publish)


@router.get("/catalog/template.xlsx", response_class=Response, summary="The stewards' Excel template",
            responses={**ERRORS, 200: {"content": {XLSX: {}}, "description": "An .xlsx workbook"}})
def get_template(
    session: DbSession, actor: CurrentActor,
    resource: Annotated[list[str] | None, Query(description="Fill with these resources (name, code or id)")] = None,
) -> Response:
    actor.require("catalog.read")
    chosen = [service.get_resource(session, ref) for ref in resource or []]
    buffer = BytesIO()
    write_template(session, buffer, chosen)
    name = "catalog-template.xlsx" if not chosen else "catalog-resources.xlsx"
    return Response(buffer.getvalue(), media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.post("/catalog/template", response_model=list[ImportedOut], responses=ERRORS,
             summary="Import a filled Excel template (all or nothing)")
def post_template(file: UploadFile, session: DbSession, actor: CurrentActor,
                  publish: PublishFlag = False) -> list[ImportedOut]:
    return _finish(session, actor, import_workbook(session, actor, file.file, file.filename or "upload.xlsx"),
                   publish)
