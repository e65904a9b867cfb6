"""Baseline (c) of bench/exchange.py: a bare Starlette app doing the primary-key lookup and
nothing else — no authentication, grant, masking or audit — on the same data:

    uvicorn exchange_starlette:app --app-dir bench --workers 2

Configured from the environment: BENCH_DSN (a SQLite file path, opened read-only, or a
postgresql:// URL), BENCH_TABLE, BENCH_KEY (the key column) and BENCH_COLUMNS (comma-separated
columns to return). `GET /records/{key}` answers the row as a JSON object (404 when there is
none); `GET /healthz` says it is up. One connection per worker process, used directly from the
event loop: the cheapest way there is, so the floor is as low as it gets."""

from __future__ import annotations

import os
import re
import sqlite3
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise RuntimeError(f"{what}: {value!r} is not a plain SQL identifier")
    return value


DSN = os.environ.get("BENCH_DSN", "")
TABLE = _name(os.environ.get("BENCH_TABLE", ""), "BENCH_TABLE")
KEY = _name(os.environ.get("BENCH_KEY", ""), "BENCH_KEY")
COLUMNS = [_name(c, "BENCH_COLUMNS") for c in os.environ.get("BENCH_COLUMNS", "").split(",") if c]
IS_PG = DSN.startswith("postgresql")
SQL = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {KEY} = {'%s' if IS_PG else '?'}"

_conn: Any = None


def connection() -> Any:
    """This worker's connection, opened on first use (after uvicorn has forked/spawned it)."""
    global _conn
    if _conn is None:
        if IS_PG:
            import psycopg

            _conn = psycopg.connect(DSN, autocommit=True)
        else:
            _conn = sqlite3.connect(f"file:{DSN}?mode=ro", uri=True, check_same_thread=False)
    return _conn


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


async def record(request: Request) -> Response:
    key = request.path_params["key"]
    row = connection().execute(SQL, (key,)).fetchone()
    if row is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return JSONResponse({c: _plain(v) for c, v in zip(COLUMNS, row, strict=True)})


async def healthz(request: Request) -> Response:
    connection()
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/records/{key}", record), Route("/healthz", healthz)])
