"""The size limit of uploaded files (`ONCEONLY_INGEST_MAX_UPLOAD_MB`), enforced while the body
arrives.

The multipart parser spools a whole upload to disk before an endpoint sees it, so a check in the
endpoint would come after the disk filled. This middleware looks at multipart requests first:
a declared `Content-Length` above the limit is refused before a byte is read; a body without
one (chunked) is counted as it streams and refused the moment it passes the limit. Either way
the answer is 413 naming the limit — problem+json for the API, a short page for the web — and
no batch exists."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROBLEM = "application/problem+json"
API_PREFIX = "/api/"


class _TooLarge(BaseException):
    """Raised from `receive` mid-body. A BaseException on purpose: the framework turns any
    Exception while parsing a form into a 400, and a truncated form must never be parsed into a
    partial file; this one passes through to the middleware (cleanups on the way still run)."""


class UploadLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not _is_multipart(scope):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, send)
            return
        received, started = 0, False

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, sending)
        except _TooLarge:
            if started:
                raise
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        mb = self.max_bytes // (1 << 20)
        if str(scope.get("path", "")).startswith(API_PREFIX):
            body = json.dumps({"type": "about:blank", "title": "Upload too large", "status": 413,
                               "detail": f"the file is larger than the {mb} MB an upload may have "
                                         "(ONCEONLY_INGEST_MAX_UPLOAD_MB); load it with `onceonly ingest` "
                                         "on the server, or split it", "field": "file"},
                              ensure_ascii=False).encode()
            kind = PROBLEM
        else:
            body = (f"<!doctype html><meta charset=utf-8><title>文件过大 File too large</title>"
                    f"<h1>文件过大</h1><p>上传的文件不能超过 {mb} MB。请在服务器上用 <code>onceonly ingest</code> "
                    f"导入，或拆分后上传。</p><p lang=en>The file is larger than the {mb} MB an upload may have. "
                    f"Load it with <code>onceonly ingest</code> on the server, or split it.</p>"
                    "<p><a href=\"/\">首页 Home</a></p>").encode()
            kind = "text/html; charset=utf-8"
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _is_multipart(scope: Scope) -> bool:
    return (_header(scope, b"content-type") or b"").lower().startswith(b"multipart/form-data")


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    return int(raw) if raw is not None and raw.isdigit() else None
