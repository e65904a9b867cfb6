"""Web pages mount point: the staff console's pages, static assets and browser hardening."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from onceonly.web import (
    audit_pages,
    auth_pages,
    catalog_pages,
    exchange_apply_pages,
    exchange_pages,
    home_pages,
    ingest_pages,
    stats_pages,
)
from onceonly.web.i18n import load_all
from onceonly.web.security import SecurityHeadersMiddleware

STATIC_DIR = Path(__file__).parent / "static"


def mount(app: FastAPI) -> None:
    """Attach the staff console pages and static assets."""
    load_all()
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(auth_pages.router)
    app.include_router(home_pages.router)
    app.include_router(ingest_pages.router)  # before the catalog's /catalog/resources/{ref:path}
    app.include_router(catalog_pages.router)
    app.include_router(exchange_pages.router)
    app.include_router(exchange_apply_pages.router)
    app.include_router(stats_pages.router)
    app.include_router(audit_pages.router)
