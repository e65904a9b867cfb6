"""The bulk mode (批量复制): a full or incremental export, streamed.

`format=csv|jsonl|parquet`, `fields=a,b`, `bom=1` (CSV only), `since=SEQ` (incremental).
A full export is every live row within the grant, as of one snapshot; the header
`X-OnceOnly-Resume-Seq` names that snapshot's last change-log sequence, so the next run asks
`since=` it and gets exactly what changed after. An incremental export has one row per key
changed in (since, resume], in the order of each key's last change, with `_seq` and `_op`
columns first: `I`/`U` carry the row as it is now, `D` only the key fields.

Transactions (kept short where they write, see calls.py): authentication; `authorize` (the
call counted for the rate limit); a read-only snapshot that counts the rows and then streams
them; between the two, `record_usage` for the count (429 if it would pass the quota) and the
audit record, committed before the first byte goes out. The body's size is not known then:
the record carries the row count, and `bytes` 0."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.exchange.calls import QUOTA_HEADER, Context
from onceonly.exchange.changes import check_since, parse_since
from onceonly.exchange.data_errors import RequestInvalid
from onceonly.exchange.enforcement import Permit, record_usage
from onceonly.exchange.export_formats import CONTENT_TYPES, Writer, writer_for
from onceonly.exchange.projection import Params, narrow, parse_fields, resource_of, single
from onceonly.store import reading

RESUME_HEADER = "X-OnceOnly-Resume-Seq"
RECORDS_HEADER = "X-OnceOnly-Records"
PARAMS = ("format", "since", "bom", "fields")


@dataclass(frozen=True)
class ExportRequest:
    format: str
    since: int | None
    bom: bool
    fields: list[str] | None


def parse(params: Params) -> ExportRequest:
    unknown = [k for k, _ in params if k not in PARAMS]
    if unknown:
        raise RequestInvalid(f"{unknown[0][:64]}: not a parameter of the export ({', '.join(PARAMS)})",
                             field=unknown[0][:64])
    fmt = single(params, "format") or "csv"
    if fmt not in CONTENT_TYPES:
        raise RequestInvalid(f"format: one of {', '.join(CONTENT_TYPES)}", field="format")
    bom = single(params, "bom")
    if bom not in (None, "0", "1"):
        raise RequestInvalid("bom: 1 (a UTF-8 byte-order mark for Excel) or 0", field="bom")
    if bom == "1" and fmt != "csv":
        raise RequestInvalid("bom: only CSV takes a byte-order mark", field="bom")
    raw_since = single(params, "since")
    return ExportRequest(fmt, None if raw_since is None else parse_since(raw_since), bom == "1",
                         parse_fields(single(params, "fields")))


def _writer(res: Resource, shown: Permit, req: ExportRequest) -> Writer:
    types = {f.name: f.type for f in res.fields}
    columns, kinds = list(shown.fields), [types[f] for f in shown.fields]
    if req.since is not None:
        columns, kinds = ["_seq", "_op", *columns], ["integer", "string", *kinds]
    offset = 2 if req.since is not None else 0
    masks = {offset + i: shown.masking[f] for i, f in enumerate(shown.fields) if f in shown.masking}
    return writer_for(req.format, columns, kinds, masks, req.bom)


def _stream(read: Session, res: Resource, shown: Permit, req: ExportRequest, head: int) -> Iterator[bytes]:
    """The body, a chunk at a time; closes the snapshot when done or abandoned."""
    try:
        writer = _writer(res, shown, req)
        yield writer.header()
        chunks = (reading.stream_changed(read, res, shown.fields, req.since, head, shown.row_filter)
                  if req.since is not None else reading.stream_live(read, res, shown.fields, shown.row_filter))
        for rows in chunks:
            data = writer.rows(rows)
            del rows  # let the chunk go before the next is fetched
            if data:
                yield data
            del data
        yield writer.close()
    finally:
        read.rollback()
        read.close()


def start(ctx: Context, params: Params) -> Response:
    """Authorize, snapshot, count, record and audit, then hand out the stream."""
    req = parse(params)
    db = ctx.db
    with db.session(write=True) as session:
        permit = ctx.permit(session)
        shown = narrow(permit, resource_of(session, permit), req.fields)
    read = db.sessions()
    try:
        reading.export_snapshot(read)
        res = resource_of(read, permit)
        head = reading.log_head(read, res)
        if req.since is not None:
            check_since(req.since, head, res)
            count = reading.count_changed(read, res, req.since, head, permit.row_filter)
        else:
            count = reading.count_live(read, res, permit.row_filter)
        with db.session(write=True) as session:
            total = record_usage(session, permit, count)
            ctx.audit(status=200, records=count, detail={"fields": list(shown.fields), "format": req.format,
                                                         "since": req.since, "resume_seq": head}, session=session)
        ctx.audited = True  # committed with the count
    except BaseException:
        read.close()
        raise
    name = f"{permit.service_code}-{'since-' + str(req.since) + '-' if req.since is not None else ''}{head}"
    headers = {RESUME_HEADER: str(head), RECORDS_HEADER: str(count),
               QUOTA_HEADER: str(max(0, permit.daily_quota - total)),
               "Content-Disposition": f'attachment; filename="{name}.{req.format}"'}
    return StreamingResponse(_stream(read, res, shown, req, head), media_type=CONTENT_TYPES[req.format],
                             headers=headers)
