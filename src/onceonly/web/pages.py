"""Page helpers shared by the web routes."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from onceonly.errors import PlatformError


def render_error(request: Request, exc: PlatformError) -> Response:
    if exc.status == 401:
        from fastapi.responses import RedirectResponse

        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return HTMLResponse(f"<h1>{exc.status}</h1><p>{exc.message}</p>", status_code=exc.status)
