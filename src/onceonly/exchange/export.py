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
that record carries the row count, and `bytes` 0. When the response ends, however it ends, a
`delivery` record follows (queued, not awaited) with the rows and bytes actually sent and the
whole time taken — status 200 complete, 499 the client went away, 500 the server failed
mid-stream — naming the call's record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session
from starlette.types import Receive, Scope, Send

from onceonly.audit.writer import append_delivery
from onceonly.catalog.models import Resource
from onceonly.exchange.calls import QUOTA_HEADER, Context
from onceonly.exchange.changes import check_since, parse_since
from onceonly.exchange.data_errors import RequestInvalid
from onceonly.exchange.enforcement import Permit, record_usage
from onceonly.exchange.export_formats import CONTENT_TYPES, Writer, writer_for
from onceonly.exchange.metrics import observe_bytes
from onceonly.exchange.projection import Params, narrow, parse_fields, resource_of, single
from onceonly.store import reading

RESUME_HEADER = "X-OnceOnly-Resume-Seq"
RECORDS_HEADER = "X-OnceOnly-Records"
PARAMS = ("format", "since", "bom", "fields")
log = logging.getLogger(__name__)


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


@dataclass
class _Sent:
    """What went out: rows and bytes handed to the server, and how the stream ended."""

    rows: int = 0
    bytes: int = 0
    complete: bool = False
    failed: bool = False  # the server could not go on (a database error mid-stream)

    @property
    def status(self) -> int:
        return 200 if self.complete else 500 if self.failed else 499


def _stream(read: Session, res: Resource, shown: Permit, req: ExportRequest, head: int, sent: _Sent
            ) -> Iterator[bytes]:
    """The body, a chunk at a time. A chunk counts as sent once the server asks for the next one:
    the response hands a chunk over before it asks again. Cleaning up is `_ExportResponse`'s."""
    waiting = 0  # rows whose bytes have not gone out yet (parquet buffers a row group)
    try:
        writer = _writer(res, shown, req)
        header = writer.header()
        yield header
        sent.bytes += len(header)
        chunks = (reading.stream_changed(read, res, shown.fields, req.since, head, shown.row_filter)
                  if req.since is not None else reading.stream_live(read, res, shown.fields, shown.row_filter))
        for rows in chunks:
            data = writer.rows(rows)
            waiting += len(rows)
            del rows  # let the chunk go before the next is fetched
            if data:
                yield data
                sent.bytes, sent.rows, waiting = sent.bytes + len(data), sent.rows + waiting, 0
            del data
        tail = writer.close()
        yield tail
        sent.bytes, sent.rows = sent.bytes + len(tail), sent.rows + waiting
        sent.complete = True
    except Exception:
        sent.failed = True
        raise


class _ExportResponse(StreamingResponse):
    """A streamed export that ends deterministically: however the response ends (complete, the
    client gone, an error), the body is closed, the snapshot released and the delivery recorded,
    in a worker thread. Left to itself, an abandoned body would wait for the garbage collector
    and run its cleanup in whatever thread that happened in."""

    def __init__(self, body: Iterator[bytes], finish: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._body, self._finish = body, finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._close)

    def _close(self) -> None:
        close = getattr(self._body, "close", None)
        if close is not None:
            close()
        self._finish()


_deliveries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-delivery")


def _finisher(read: Session, ctx: Context, call_seq: int, req: ExportRequest, sent: _Sent) -> Callable[[], None]:
    def finish() -> None:
        try:
            read.rollback()
            read.close()
        finally:
            fields = ctx.fields(status=sent.status, records=sent.rows, nbytes=sent.bytes,
                                detail={"format": req.format})
            # Queued, not awaited: the answer is out already, and its end must not wait for a
            # commit (on SQLite another writer may hold the lock for a while).
            _deliveries.submit(_record_delivery, ctx, call_seq, sent, fields)
    return finish


def _record_delivery(ctx: Context, call_seq: int, sent: _Sent, fields: dict[str, Any]) -> None:
    """The delivery record (`append_delivery`). The answer has gone out already, so a failure
    to record it is logged rather than raised (the call's own record stands)."""
    try:
        append_delivery(ctx.db, call_seq=call_seq, **fields)
    except Exception:  # after the response: nothing to answer the client with
        log.exception("the delivery record of export call %s could not be written", call_seq)
        return
    observe_bytes(ctx.call.service, ctx.call.mode, sent.bytes)


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
            call_seq = ctx.audit(status=200, records=count, detail={"fields": list(shown.fields), "format": req.format,
                                                         "since": req.since, "resume_seq": head}, session=session)
        ctx.audited = True  # committed with the count
    except BaseException:
        read.close()
        raise
    name = f"{permit.service_code}-{'since-' + str(req.since) + '-' if req.since is not None else ''}{head}"
    headers = {RESUME_HEADER: str(head), RECORDS_HEADER: str(count),
               QUOTA_HEADER: str(max(0, permit.daily_quota - total)),
               "Content-Disposition": f'attachment; filename="{name}.{req.format}"'}
    sent = _Sent()
    return _ExportResponse(_stream(read, res, shown, req, head, sent), _finisher(read, ctx, call_seq, req, sent),
                           media_type=CONTENT_TYPES[req.format], headers=headers)
