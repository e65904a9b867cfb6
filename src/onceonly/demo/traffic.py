"""A short burst of exchange traffic after the demo is built, through the real HTTP stack (keys,
grants, masking, quotas, audit), so the statistics and the audit log have something to show:
every demo system calls each service it was granted, in that service's mode, plus a few calls a
grant does not allow (which are refused and audited too)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from onceonly.catalog.service import get_resource
from onceonly.db import Database
from onceonly.demo.exchange import SERVICES, DemoCredential
from onceonly.settings import Settings
from onceonly.store.service import fetch_rows

PURPOSES = ("公租房资格审核 2026-0158", "公积金提取核验 2026-3371", "企业开办一件事 2026-0912",
            "待遇资格认证 2026-0047", "信用核查 2026-2210")


def run_burst(settings: Settings, creds: list[DemoCredential], seed: int, rounds: int = 12,
              tick: Callable[[int], None] | None = None) -> Counter[int]:
    """Call every granted service `rounds` times; returns the count of each HTTP status."""
    from fastapi.testclient import TestClient

    from onceonly.app import create_app

    rng = random.Random(seed)
    samples = _samples(Database(settings))
    statuses: Counter[int] = Counter()
    by_code = {s.code: s for s in SERVICES}
    with TestClient(create_app(settings)) as client:
        for cred in creds:
            auth = {"Authorization": f"Bearer {cred.api_key}"}
            for code in cred.services:
                spec = by_code[code]
                rows = samples.get(spec.resource, [])
                for _ in range(rounds):
                    # Header values are bytes on the wire: UTF-8 text goes percent-encoded.
                    headers = {**auth, "X-OnceOnly-Purpose": quote(rng.choice(PURPOSES))}
                    statuses[_call(client, spec.code, spec.mode, rows, headers, rng)] += 1
                if tick:
                    tick(1)
            refused = next((s for s in SERVICES if s.code not in cred.services), None)
            if refused is not None:  # a service this system has no grant for: 403, audited
                statuses[client.get(f"/api/v1/exchange/{refused.code}/records", headers=auth).status_code] += 1
    return statuses


def _call(client: Any, code: str, mode: str, rows: list[dict[str, Any]], headers: dict[str, str],
          rng: random.Random) -> int:
    base = f"/api/v1/exchange/{code}"
    spec = next(s for s in SERVICES if s.code == code)
    key = spec.fields[0]
    row = rng.choice(rows) if rows else {}
    if mode == "verify":
        claims = []
        for r in rng.sample(rows, min(len(rows), 20)):
            claim = {f: r[f] for f in spec.fields[:2] if r.get(f) is not None}
            if rng.random() < 0.2 and len(spec.fields) > 1:  # a wrong claim now and then
                claim[spec.fields[1]] = "不符"
            claims.append(claim)
        return int(client.post(f"{base}/verify", json={"records": claims}, headers=headers).status_code)
    if mode == "api":
        return int(client.get(f"{base}/records/{row.get(key, 'none')}", headers=headers).status_code)
    if mode == "query":
        return int(client.get(f"{base}/records", params={"limit": 20}, headers=headers).status_code)
    response = client.get(f"{base}/export", params={"format": "csv"}, headers=headers)
    return int(response.status_code)


def _samples(db: Database) -> dict[str, list[dict[str, Any]]]:
    """A few hundred stored rows of each resource the services cover, to ask about."""
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with db.session() as session:
            for name in {s.resource for s in SERVICES}:
                out[name] = fetch_rows(session, get_resource(session, name), limit=300)
    finally:
        db.dispose()
    return out
