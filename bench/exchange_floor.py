"""Reference (d) of bench/exchange.py: the floor of an audited record lookup — the least work the
exchange's `api` call must do, written straight on Starlette and the database driver, without
OnceOnly's layers. It answers the question target (a) ≥ 0.4 × (c) raises: how close to a bare
lookup can a call come that authenticates, masks and durably audits?

    uvicorn exchange_floor:app --app-dir bench --workers 2

Per call, as OnceOnly's: the bearer key's SM3 hash looked up (in memory, configured at start);
the granted columns of the row by primary key; masking (onceonly.kit.masking, the platform's
rules); the JSON body; an audit record in OnceOnly's canonical form, chained by its SM3 hash
(onceonly.audit.canonical) and committed durably with the call's day and minute usage counters
— group commit by one writer thread per worker (SQLite: `synchronous=FULL`, the workers taking
turns on a lock file; PostgreSQL: the head row locked FOR UPDATE) — and the answer only once
that commit is on disk. Its tables are copies of OnceOnly's (same columns and indexes, so an
insert costs what OnceOnly's does) named `floor_*`, made by `prepare(dsn)` before it starts.

Left out, each of which OnceOnly's call does: metadata read afresh per call (so a revoked key
or grant stops at once), expiry, rate limit and daily quota decided per call (429 with
Retry-After), row filters, the `fields` parameter, the purpose header, request signatures,
texts normalized before they are stored, problem+json denials (each audited), signed audit
checkpoints, metrics, security headers and the middleware every other route needs. So (d) is no
competitor: it is what any implementation of the call in this stack pays at least.

Configured from the environment: BENCH_DSN, BENCH_TABLE, BENCH_KEY, BENCH_COLUMNS as
exchange_starlette.py; FLOOR_KEY_SM3 (the API key's SM3 hex), FLOOR_SYSTEM, FLOOR_ORG,
FLOOR_SERVICE and FLOOR_MASKING (a JSON object: column → masking rule)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from exchange_starlette import COLUMNS, DSN, IS_PG, KEY, TABLE, _plain, connection
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from onceonly.audit.canonical import FIELDS, canonical_bytes
from onceonly.kit.crypto import sm3_hex
from onceonly.kit.masking import rule

KEY_SM3 = os.environ.get("FLOOR_KEY_SM3", "")
SYSTEM = os.environ.get("FLOOR_SYSTEM", "")
ORG = os.environ.get("FLOOR_ORG", "")
SERVICE = os.environ.get("FLOOR_SERVICE", "")
MASKS: dict[str, Callable[[str], str]] = {c: rule(spec) for c, spec in
                                          json.loads(os.environ.get("FLOOR_MASKING", "{}")).items()}
SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE {KEY} = {'%s' if IS_PG else '?'}"
DETAIL = {"fields": COLUMNS}
DETAIL_JSON = json.dumps(DETAIL, ensure_ascii=False)  # as stored (OnceOnly's JSON column); hashed as an object
RECORD_COLUMNS = [f if f != "time" else "at" for f in FIELDS] + ["hash"]
MAX_GROUP = 1000
MINUTE, DAY = 60, 86_400


def _sql(text: str) -> str:
    return text.replace("?", "%s") if IS_PG else text


INSERT = _sql(f"INSERT INTO floor_audit_records ({', '.join(RECORD_COLUMNS)}) "
              f"VALUES ({', '.join('?' * len(RECORD_COLUMNS))})")
HEAD = "SELECT seq, hash FROM floor_audit_head WHERE id = 1" + (" FOR UPDATE" if IS_PG else "")
MOVE_HEAD = _sql("UPDATE floor_audit_head SET seq = ?, hash = ? WHERE id = 1")
COUNT = _sql("INSERT INTO floor_usage (grant_id, period, bucket, calls, records) VALUES (1, ?, ?, ?, ?) "
             "ON CONFLICT (grant_id, period, bucket) DO UPDATE SET calls = floor_usage.calls + excluded.calls, "
             "records = floor_usage.records + excluded.records RETURNING calls, records")


def prepare(dsn: str) -> None:
    """Create the floor's tables as copies of OnceOnly's audit_records and exchange_usage (run
    once, in the benchmark's process, before the server starts)."""
    if dsn.startswith("postgresql"):
        import psycopg

        with psycopg.connect(dsn, autocommit=True) as pg:
            pg.execute("CREATE TABLE floor_audit_records (LIKE audit_records INCLUDING ALL)")
            pg.execute("CREATE TABLE floor_usage (LIKE exchange_usage INCLUDING ALL)")
            pg.execute("CREATE TABLE floor_audit_head (id integer PRIMARY KEY, seq bigint NOT NULL, "
                       "hash text NOT NULL)")
            pg.execute("INSERT INTO floor_audit_head VALUES (1, 0, %s)", ("0" * 64,))
        return
    conn = sqlite3.connect(dsn, isolation_level=None)
    try:
        ddl = [sql for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name IN ('audit_records', 'exchange_usage') AND sql IS NOT NULL "
            "AND type IN ('table', 'index') ORDER BY type DESC")]
        conn.execute("BEGIN IMMEDIATE")
        for sql in ddl:
            conn.execute(sql.replace("audit_records", "floor_audit_records").replace("exchange_usage", "floor_usage"))
        conn.execute("CREATE TABLE floor_audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)")
        conn.execute("INSERT INTO floor_audit_head VALUES (1, 0, ?)", ("0" * 64,))
        conn.execute("COMMIT")
    finally:
        conn.close()


class Writer:
    """Group commit, as OnceOnly's audit writer does it: whatever is queued goes into one
    transaction; every caller of the group is woken once it has committed."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[dict[str, Any], asyncio.Future[None]]] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    def submit(self, content: dict[str, Any]) -> asyncio.Future[None]:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="floor-writer", daemon=True)
            self.thread.start()
        future = asyncio.get_running_loop().create_future()
        self.queue.put((content, future))
        return future

    def _run(self) -> None:
        lock_fd = None if IS_PG else os.open(f"{DSN}-floor.lock", os.O_RDWR | os.O_CREAT, 0o600)
        conn: Any = None
        while True:
            group = [self.queue.get()]
            while len(group) < MAX_GROUP:
                try:
                    group.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            error: BaseException | None = None
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                conn = conn or _connect()
                self._commit(conn, group)
            except Exception as exc:  # the group's calls fail (500); the next group starts afresh
                error = exc
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            finally:
                if lock_fd is not None:
                    fcntl.flock(lock_fd, fcntl.LOCK_UN)
            woken: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _, future in group:
                woken.setdefault(future.get_loop(), []).append(future)
            for loop, futures in woken.items():
                loop.call_soon_threadsafe(_wake, futures, error)

    @staticmethod
    def _commit(conn: Any, group: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        cur = conn.cursor()
        cur.execute("BEGIN" if IS_PG else "BEGIN IMMEDIATE")
        seq, prev = cur.execute(HEAD).fetchone()
        now = datetime.now(UTC)
        rows = []
        for content, _ in group:
            seq += 1
            record = {**content, "seq": seq, "time": now, "prev_hash": prev}
            prev = sm3_hex(canonical_bytes(record))
            rows.append([record[f] if f != "detail" else DETAIL_JSON for f in FIELDS] + [prev])
        cur.executemany(INSERT, rows)
        stamp = time.time()
        cur.execute(COUNT, ("day", int(stamp // DAY), len(group), len(group)))
        cur.fetchone()
        cur.execute(COUNT, ("minute", int(stamp // MINUTE), len(group), 0))
        cur.fetchone()
        cur.execute(MOVE_HEAD, (seq, prev))
        cur.execute("COMMIT")


def _connect() -> Any:
    if IS_PG:
        import psycopg

        return psycopg.connect(DSN, autocommit=True)  # BEGIN and COMMIT said, as on SQLite
    conn = sqlite3.connect(DSN, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # as OnceOnly's audit writer: on disk before anyone is answered
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _wake(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(RuntimeError(f"the audit group did not commit: {error}"))


WRITER = Writer()


def _problem(status: int, title: str) -> Response:
    return JSONResponse({"title": title, "status": status}, status_code=status, media_type="application/problem+json")


async def record(request: Request) -> Response:
    started = time.perf_counter()
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer ") or sm3_hex(auth[7:]) != KEY_SM3:
        return _problem(401, "unknown API key")
    key = request.path_params["key"]
    row = connection().execute(SELECT, (key,)).fetchone()
    if row is None:
        return _problem(404, "no record with this key")
    shown = {c: (MASKS[c](v) if c in MASKS and isinstance(v, str) else _plain(v))
             for c, v in zip(COLUMNS, row, strict=True)}
    body = json.dumps({"service": request.path_params["service"], "key": key, "record": shown},
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    client = request.client
    content = {"kind": "call", "system": SYSTEM, "org": ORG, "username": None, "service": SERVICE, "mode": "api",
               "action": None, "target": None, "purpose": None,
               "request_digest": sm3_hex(f"GET {request.url.path}\n"), "status": 200, "records": 1,
               "bytes": len(body), "latency_ms": int((time.perf_counter() - started) * 1000),
               "ip": client.host if client else None, "detail": DETAIL}
    await WRITER.submit(content)
    return Response(body, media_type="application/json")


async def healthz(request: Request) -> Response:
    connection()
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/api/v1/exchange/{service}/records/{key:path}", record), Route("/healthz", healthz)])


if __name__ == "__main__" and sys.argv[1:] == ["prepare"]:
    prepare(DSN)
