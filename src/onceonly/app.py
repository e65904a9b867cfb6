"""Application assembly: routers of each domain, the problem+json error renderer, health and
metrics. Nothing else lives here."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import DataError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onceonly import __version__
from onceonly.db import Database
from onceonly.errors import PlatformError
from onceonly.kit.memory import serving
from onceonly.settings import Settings, get_settings

log = logging.getLogger("onceonly")
PROBLEM = "application/problem+json"


def _problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


MACHINE_PATHS = ("/api/", "/docs", "/redoc", "/openapi.json", "/static/", "/healthz", "/metrics")


def _is_page(request: Request) -> bool:
    """Web pages get HTML error pages; everything machine-facing gets problem+json."""
    return not request.url.path.startswith(MACHINE_PATHS)


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(PlatformError)
    async def platform_error(request: Request, exc: PlatformError) -> Response:
        if _is_page(request):
            from onceonly.web.pages import render_error

            return render_error(request, exc)
        return JSONResponse(exc.problem(), status_code=exc.status, media_type=PROBLEM)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path")) or "body",
             "message": e["msg"]}
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        return JSONResponse(
            {"type": "/problems/validation", "title": "Invalid input", "status": 422,
             "detail": f"{first['field']}: {first['message']}", "field": first["field"], "errors": errors},
            status_code=422, media_type=PROBLEM,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if _is_page(request):
            from onceonly.web.pages import render_error

            return render_error(request, PlatformError(str(exc.detail), status=exc.status_code))
        return _problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        # The database refused a value the schemas let through (e.g. a NUL character, which
        # PostgreSQL cannot store): bad input, not a server fault.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "invalid value"
        return _problem(422, "Invalid input", f"the database refused a value: {reason}")

    @app.exception_handler(IntegrityError)
    async def integrity_error(request: Request, exc: IntegrityError) -> Response:
        # Services check uniqueness first; reaching the constraint means a concurrent request won.
        return _problem(409, "Conflict", "the change conflicts with another one made at the same time; retry")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _problem(500, "Internal error", "an unexpected error occurred; it has been logged")


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_LABELS: dict[int, tuple[object, str]] = {}  # id(route) → (route, its label): a route's prefix never changes


def _route_label(scope: Scope) -> str:
    """The matched path template including the router prefix, e.g. /api/v1/orgs/{code}.

    FastAPI may report an included router's route without its prefix ("/orgs"), which would
    lump /api/v1/orgs together with any other router's /orgs; the prefix is recovered as the part
    of the request path before the route's own (rendered) template, once per route."""
    route = scope.get("route")
    known = _LABELS.get(id(route))
    if known is not None and known[0] is route:
        return known[1]
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    try:
        tail = str(getattr(route, "path_format", template)).format(
            **{k: str(v) for k, v in scope.get("path_params", {}).items()})
    except (KeyError, IndexError, ValueError):
        return template
    path = str(scope.get("path", ""))
    if not tail or not path.endswith(tail):
        return template
    label = path[: len(path) - len(tail)] + template
    if len(_LABELS) < 10_000:
        _LABELS[id(route)] = (route, label)
    return label


class _Measured:
    """Counts and times every HTTP request by method, route template and status. Pure ASGI (a
    BaseHTTPMiddleware would run each request's app in a task of its own: a sixth of the cost of
    an exchange call)."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app, self.requests, self.latency = app, requests, latency
        self.children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"  # client-chosen: bounded
            path = _route_label(scope)
            key = (method, path, status)
            children = self.children.get(key)
            if children is None:  # label values are bounded: methods, route templates, statuses
                children = (self.requests.labels(method, path, str(status)), self.latency.labels(method, path))
                if len(self.children) < 10_000:
                    self.children[key] = children
            children[0].inc()
            children[1].observe(time.perf_counter() - start)


def _install_metrics(app: FastAPI) -> CollectorRegistry:
    registry = CollectorRegistry()
    requests = Counter("onceonly_http_requests_total", "HTTP requests", ["method", "route", "status"],
                       registry=registry)
    latency = Histogram("onceonly_http_request_seconds", "HTTP request latency", ["method", "route"],
                        registry=registry)
    app.add_middleware(_Measured, requests=requests, latency=latency)
    return registry


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At start: batches left `running` by a process that is gone (a crash, kill -9) had their
    transaction rolled back; mark them interrupted so their status tells the truth."""
    from onceonly.ingest.service import mark_interrupted

    try:
        marked = mark_interrupted(app.state.db)
        if marked:
            log.warning("marked %d interrupted ingest batch(es)", marked)
    except Exception:  # an unreachable database is reported by /healthz, not by refusing to start
        log.exception("could not check for interrupted batches")
    from onceonly.exchange.webhooks import start_delivery

    deliveries = start_delivery(app.state.settings, app.state.db, app.state.secret)  # webhook worker thread
    with serving():  # the cycle collector kept out of the requests' way
        yield
    if deliveries is not None:
        deliveries.stop()


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = db or Database(settings)
    app = FastAPI(
        lifespan=_lifespan,
        title="OnceOnly 政务数据共享交换平台",
        version=__version__,
        description="Catalog, store and exchange of a city's government data. Errors are RFC 9457 problem+json.",
        openapi_tags=[{"name": n} for n in ("organizations", "users", "catalog", "resources", "code lists", "ops")],
    )
    app.state.settings = settings
    app.state.db = db
    app.state.secret = settings.ensure_secret()
    _install_errors(app)
    from onceonly.ingest.upload_limit import UploadLimit

    app.add_middleware(UploadLimit, max_bytes=settings.ingest_max_upload_mb << 20)
    registry = _install_metrics(app)
    from onceonly.exchange.metrics import register as register_exchange_metrics

    register_exchange_metrics(registry)  # exchange calls (observe_call) on /metrics

    from onceonly.accounts.endpoints import router as accounts_router
    from onceonly.audit.endpoints import router as audit_router
    from onceonly.catalog.endpoints import router as catalog_router
    from onceonly.catalog.transfer_endpoints import router as transfer_router
    from onceonly.exchange.data_endpoints import direct_routes
    from onceonly.exchange.data_endpoints import router as exchange_data_router
    from onceonly.exchange.endpoints import router as exchange_router
    from onceonly.exchange.errors import Throttled, throttled_problem
    from onceonly.exchange.stats_endpoints import router as exchange_stats_router
    from onceonly.exchange.subscription_endpoints import router as exchange_subscriptions_router
    from onceonly.ingest.endpoints import router as ingest_router
    from onceonly.web.routes import mount as mount_web

    # The data plane first: it is what business systems call all day, and routes are matched in
    # order (a hundred routes before it cost a seventh of a record lookup). No fixed /exchange
    # path has the shape of a data-plane route (tests/exchange/test_exchange_api.py checks).
    app.include_router(exchange_data_router, prefix="/api/v1")
    app.include_router(accounts_router, prefix="/api/v1")
    # Before the catalog: its GET /resources/{ref:path} would otherwise take /resources/{ref}/batches.
    app.include_router(ingest_router, prefix="/api/v1")
    app.include_router(catalog_router, prefix="/api/v1")
    app.include_router(transfer_router, prefix="/api/v1")
    app.include_router(audit_router, prefix="/api/v1")
    app.include_router(exchange_router, prefix="/api/v1")
    app.include_router(exchange_subscriptions_router, prefix="/api/v1")
    app.include_router(exchange_stats_router, prefix="/api/v1")
    app.router.routes[0:0] = direct_routes("/api/v1")  # the record lookup, matched before anything else
    app.add_exception_handler(Throttled, throttled_problem)  # 429 with Retry-After

    @app.get("/healthz", tags=["ops"], summary="Liveness and database check")
    def healthz() -> Response:
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception:  # any driver error means unhealthy; the detail (hosts, users) goes to the log only
            log.exception("health check: database unreachable")
            return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": db.engine.dialect.name, "version": __version__})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    mount_web(app)
    return app
