"""Helpers of the audit tests: write records directly, verify, and tamper as a database
superuser would (triggers out of the way first)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from onceonly.audit import service
from onceonly.audit.keys import KeyPair, ensure_keypair, load_public_key
from onceonly.audit.schemas import VerifyReport
from onceonly.audit.verify import verify_database
from onceonly.db import Database, utcnow

# The API client of the core tests lives in tests/api, on sys.path only when pytest collected a
# module there; the audit API tests reuse it.
_API_DIR = str(Path(__file__).resolve().parents[1] / "api")
if _API_DIR not in sys.path:
    sys.path.append(_API_DIR)


def signer(db: Database) -> KeyPair:
    return ensure_keypair(db.settings.home)


def calls(db: Database, n: int, *, at: datetime | None = None, checkpoint_every: int = 0, **fields: Any) -> list[int]:
    """Append n call records in one transaction (optionally at a fixed time); their seqs."""
    entries = [service.entry("call", system=fields.get("system", "sys-a"), org="11341800MA2N00000X",
                             service=fields.get("service", "svc-1"), mode=fields.get("mode", "query"),
                             status=fields.get("status", 200), records=i, nbytes=100 + i, latency_ms=i % 7,
                             ip="10.1.2.3", purpose=fields.get("purpose"), detail={"i": i})
               for i in range(n)]
    clock: Callable[[], datetime] = (lambda: at) if at is not None else utcnow
    with db.session(write=True) as s:
        first, last = service.append(s.connection(), entries, clock=clock, checkpoint_every=checkpoint_every,
                                     signer=signer(db) if checkpoint_every else None)
    return list(range(first, last + 1))


def report(db: Database) -> VerifyReport:
    return verify_database(db, load_public_key(db.settings.home))


def tamper(db: Database, *statements: str, **params: Any) -> None:
    """Run SQL with the audit triggers out of the way, as a superuser with direct access could."""
    with db.engine.begin() as conn:
        if db.is_sqlite:
            names = conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                      "AND tbl_name LIKE 'audit_%'")).scalars().all()
            for name in names:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
        else:
            conn.execute(text("SET LOCAL session_replication_role = replica"))  # user triggers off
        for sql in statements:
            conn.execute(text(sql), params)
