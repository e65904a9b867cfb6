"""The exchange data plane under /api/v1/exchange/{service}: verify, records (query), a record
by key (api), export (bulk) and changes. Thin: each route reads the request in the event loop
and hands the call to calls.py in a worker thread (enforcement and the audit record block).

Registered after the management router, so /exchange/systems, /services, … keep winning; those
words are reserved and cannot be service codes. Parameters are read by the modes themselves
(and documented here through `openapi_extra`), so that every bad one is a 400 that is audited
like any other denial."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session
from starlette.routing import BaseRoute, Match
from starlette.routing import Route as StarletteRoute
from starlette.types import Scope

from onceonly.db import Database
from onceonly.exchange import calls, changes, export, query, record, verify
from onceonly.exchange.calls import Answer, Call, Context, Prepared
from onceonly.exchange.data_errors import BatchTooLarge, RequestInvalid
from onceonly.exchange.data_schemas import ChangesOut, RecordOut, RecordsOut, VerifyIn, VerifyOut
from onceonly.exchange.enforcement import Permit
from onceonly.exchange.export_formats import CONTENT_TYPES
from onceonly.exchange.models import System
from onceonly.exchange.projection import parse_fields, resource_of, single

MAX_BODY = 16 * 1024 * 1024

key_auth = HTTPBearer(auto_error=False, scheme_name="ExchangeKey",
                      description="The business system's API key (`ook_…`); systems that sign add the "
                                  "X-OnceOnly-Timestamp, -Nonce and -Signature headers (docs/exchange.md)")
router = APIRouter(prefix="/exchange", tags=["exchange data"], dependencies=[Depends(key_auth)])
ServicePath = Annotated[str, Path(description="Service code, e.g. S0001", examples=["S0001"])]


def _problem(status: int, kind: str, title: str, detail: str, description: str, **extra: Any) -> dict[str, Any]:
    example = {"type": f"/problems/{kind}", "title": title, "status": status, "detail": detail, **extra}
    schema = {"type": "object", "required": ["type", "title", "status", "detail"],
              "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                             "detail": {"type": "string"}, "field": {"type": "string"},
                             "retry_after": {"type": "integer"}}}
    return {"description": description, "content": {"application/problem+json": {"schema": schema, "example": example}}}


_400 = _problem(400, "invalid-request", "Invalid request", "household: 'x' is not an integer between -2^63 and "
                "2^63-1 (field household is integer)", "A parameter, cursor, key or body the call cannot run; "
                "`field` names it", field="household")
_401 = _problem(401, "exchange-unauthenticated", "System not authenticated", "the API key has expired",
                "No, unknown, revoked, expired or rotated-out key; disabled system; bad or replayed signature")
_403 = _problem(403, "field-not-granted", "Field not granted", "field phone is not granted for service S0001",
                "Denied by the grant: grant-missing, grant-revoked, grant-expired, field-not-granted, "
                "mode-not-offered, service-unavailable", field="phone")
_404 = _problem(404, "not-found", "Not found", "service S9999 not found", "No such service", field="service")
_429 = _problem(429, "rate-limited", "Rate limit reached", "the rate limit of 60 calls per minute for service "
                "S0001 is reached", "rate-limited or quota-exceeded; the `Retry-After` header says when to retry",
                retry_after=17)
_503 = _problem(503, "audit-unavailable", "Audit log unavailable", "the audit record could not be committed",
                "The call could not be audited, so it was not answered")
COMMON: dict[int | str, dict[str, Any]] = {400: _400, 401: _401, 403: _403, 404: _404, 429: _429, 503: _503}


def _param(name: str, description: str, schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    param: dict[str, Any] = {"name": name, "in": "query", "required": False, "description": description,
                             "schema": schema}
    if example is not None:
        param["example"] = example
    return param


FIELDS = _param("fields", "Projection: a comma-separated list of granted fields (default: all granted)",
                {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,62}(,[a-z][a-z0-9_]{0,62})*$"}, "name,region")
LIMIT = _param("limit", "Rows per page, 1–1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000}, 100)
SINCE = _param("since", "Change-log sequence to continue after (0: from the start)",
               {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}, 0)


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def _read_body(request: Request) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (not read any further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _run(request: Request, service: str, mode: str, work: Callable[[Context], Response | Prepared],
               body: bytes = b"") -> Response:
    return await calls.run(_db(request), Call(request, service, mode, body), work)


def _params(request: Request) -> list[tuple[str, str]]:
    return request.query_params.multi_items()


# -- verify ------------------------------------------------------------------------------------

@router.post(
    "/{service}/verify", summary="Verify records (比对验证)", response_model=VerifyOut,
    description="For up to 1,000 records, whether a record with the given key exists within the grant and whether "
                "each claimed field matches — never the stored values. Claimed and stored values are compared in a "
                "normal form (text NFKC-folded, trimmed and case-folded; citizen IDs with lower-case x or in their "
                "15-digit form, USCCs in any case). Every field named must be granted for verify. Counts one record "
                "per record against the daily quota.",
    responses={**COMMON, 413: _problem(413, "batch-too-large", "Request too large", "records: at most 1,000 records "
                                       "per call, not 1,001; split the batch", "Over 1,000 records (or 16 MiB)",
                                       field="records")},
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": VerifyIn.model_json_schema(),
        "example": {"records": [{"citizen_id": "11010519900101002x", "name": "张三明"}]}}}}},
)
async def verify_records(service: ServicePath, request: Request) -> Response:
    body = await _read_body(request)
    if body is None:
        exc = BatchTooLarge(f"body: larger than {MAX_BODY // (1024 * 1024)} MiB", field="body")
        await to_thread.run_sync(Context(_db(request), Call(request, service, "verify")).deny, exc)
        raise exc

    def work(ctx: Context) -> Prepared:
        def answer(session: Session, system: System) -> tuple[Permit, Answer]:
            if _params(request):
                raise RequestInvalid("verify takes no query parameters; send the records as JSON", field="query")
            records = verify.parse_body(ctx.call.body)
            permit = ctx.permit(session)
            return permit, verify.run(session, permit, resource_of(session, permit), records)
        return ctx.respond(answer)

    return await _run(request, service, "verify", work, body)


# -- query -------------------------------------------------------------------------------------

@router.get(
    "/{service}/records", summary="Query records (检索查询)", response_model=RecordsOut,
    description="Records within the grant, filtered on indexed fields, projected, sorted and paged by keyset. "
                "Filters: `field=VALUE` (equality) or `field=OP:VALUE` with OP one of eq, in, gt, ge, lt, le, e.g. "
                "`region=in:341802,341881`, `household=ge:2`; repeat a field to AND conditions; write "
                "`filter.FIELD=` for a field named fields, sort, limit or cursor. Values are typed like the field. "
                "Pass `next_cursor` back as `cursor` (or follow `next`) for the next page. Counts the records "
                "returned against the daily quota.",
    responses=COMMON,
    openapi_extra={"parameters": [
        FIELDS,
        _param("sort", "Up to 3 indexed fields, comma-separated; prefix - for descending. The key always follows",
               {"type": "string"}, "-household"),
        LIMIT,
        _param("cursor", "The previous page's `next_cursor`", {"type": "string", "maxLength": 4096}),
    ]},
)
async def query_records(service: ServicePath, request: Request) -> Response:
    def work(ctx: Context) -> Prepared:
        def answer(session: Session, system: System) -> tuple[Permit, Answer]:
            params = _params(request)
            q = query.parse(params)
            permit = ctx.permit(session)
            path = ctx.call.target.partition("?")[0]
            return permit, query.run(session, permit, resource_of(session, permit), q, master=request.app.state.secret,
                                     system_code=system.code, path=path, params=params)
        return ctx.respond(answer)

    return await _run(request, service, "query", work)


# -- export and changes (before the key route, whose path would match anything) ----------------

@router.get(
    "/{service}/export", summary="Export records (批量复制)",
    description="Every record within the grant (a consistent snapshot), or with `since` one row per key changed "
                "after that change-log sequence (columns `_seq`, `_op` first; `D` rows carry only the key), "
                "streamed as CSV (`bom=1` for Excel), JSON Lines or Parquet. `X-OnceOnly-Resume-Seq` is the "
                "sequence to pass as `since` next time; `X-OnceOnly-Records` the number of rows. The whole export "
                "counts against the daily quota before it starts (429 if it would pass it).",
    responses={200: {"description": "The export, streamed", "content": {t.split(";")[0]: {} for t in
                                                                         CONTENT_TYPES.values()},
                     "headers": {"X-OnceOnly-Resume-Seq": {"schema": {"type": "integer"},
                                                           "description": "Pass as `since` next time"},
                                 "X-OnceOnly-Records": {"schema": {"type": "integer"}}}},
               **COMMON},
    openapi_extra={"parameters": [
        _param("format", "csv (default), jsonl or parquet", {"type": "string", "enum": list(CONTENT_TYPES)}, "csv"),
        SINCE,
        _param("bom", "1: start the CSV with a UTF-8 byte-order mark (Excel)", {"type": "integer", "enum": [0, 1]}),
        FIELDS,
    ]},
)
async def export_records(service: ServicePath, request: Request) -> Response:
    return await _run(request, service, "bulk", lambda ctx: export.start(ctx, _params(request)))


@router.get(
    "/{service}/changes", summary="Change feed", response_model=ChangesOut,
    description="The change log after `since`, in order: seq, op (I/U/D), key and, for I and U, the row as it is "
                "now (granted fields, masked). Continue with `since=next_since` until `has_more` is false. Rides on "
                "a bulk grant; counts the entries returned against the daily quota.",
    responses=COMMON,
    openapi_extra={"parameters": [SINCE, LIMIT, FIELDS]},
)
async def change_feed(service: ServicePath, request: Request) -> Response:
    def work(ctx: Context) -> Prepared:
        def answer(session: Session, system: System) -> tuple[Permit, Answer]:
            permit = ctx.permit(session)
            return permit, changes.run(session, permit, resource_of(session, permit), _params(request))
        return ctx.respond(answer)

    return await _run(request, service, "changes", work)


@router.get(
    "/{service}/records/{key:path}", summary="One record by key (接口访问)", response_model=RecordOut,
    description="The record with this key. A one-field key is its value (percent-encoded); a composite key is a "
                "JSON array of its values in key order, as the change feed's `key`. Absent, deleted and outside the "
                "grant's row filter are the same 404. The key fields must be granted.",
    responses={**COMMON, 404: _problem(404, "record-not-found", "No such record", "service S0001 has no record with "
                                       "this key", "No such record (or service)", field="key")},
    openapi_extra={"parameters": [FIELDS]},
)
async def get_record(service: ServicePath, key: Annotated[str, Path(description="The record's key")],
                     request: Request) -> Response:
    def work(ctx: Context) -> Prepared:
        def answer(session: Session, system: System) -> tuple[Permit, Answer]:
            params = _params(request)
            unknown = [k for k, _ in params if k != "fields"]
            if unknown:
                raise RequestInvalid(f"{unknown[0][:64]}: not a parameter of a record lookup (fields)",
                                     field=unknown[0][:64])
            permit = ctx.permit(session)
            return permit, record.run(session, permit, resource_of(session, permit), key,
                                      parse_fields(single(params, "fields")))
        return ctx.respond(answer)

    return await _run(request, service, "api", work)


class _Direct(StarletteRoute):
    """A data-plane route the app's router matches before any other (see `direct_routes`)."""

    def __init__(self, path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> None:
        super().__init__(path, endpoint, methods=["GET"], include_in_schema=False)
        self.methods = {"GET"}  # Starlette adds HEAD; the documented route answers GET only

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self  # the metrics label it by its template, as FastAPI's routes are
        return match, child


async def _record_direct(request: Request) -> Response:
    return await get_record(request.path_params["service"], request.path_params["key"], request)


def direct_routes(prefix: str) -> list[BaseRoute]:
    """The record lookup — the call business systems make all day — as a plain Starlette route
    to put first in the app's routes: it runs `get_record` itself, but skips walking a hundred
    routes and FastAPI's parameter solving, a fifth of the call's time. `get_record` stays the
    documented route (OpenAPI) and answers what this one does not match (other methods)."""
    return [_Direct(f"{prefix}{router.prefix}/{{service}}/records/{{key:path}}", _record_direct)]