"""Builders of the data-plane tests (imported by the test_exchange_data_* modules; no tests here):
a provider's person resource with a service in every mode, consumer systems with keys, grants
with terms, an HTTP client on the real app, and the audit records a call left."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from exchange_factories import MASTER, World, add_service, add_system, approved, fresh, ready, world
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from core_factories import CLI
from onceonly.app import create_app
from onceonly.audit.models import AuditRecord
from onceonly.db import Database
from onceonly.exchange import credentials, signing
from onceonly.exchange.models import Application, Service, System

BASE = "/api/v1/exchange"
MODES = ("verify", "query", "api", "bulk")
PROBLEM = "application/problem+json"


@dataclass
class Plane:
    """A world (see exchange_factories) plus services over the person resource in every mode."""

    db: Database
    w: World
    http: TestClient
    services: dict[str, Service]
    keys: dict[str, str] = field(default_factory=dict)  # system code -> key

    def code(self, mode: str) -> str:
        return self.services[mode].code

    def grant(self, mode: str, fields: list[str], system: System | None = None, **terms: Any) -> Application:
        return approved(replace(self.w, system=system or self.w.system), fields, service=self.services[mode],
                        **terms)

    def system(self, signing_required: bool = False) -> tuple[System, str, str | None]:
        """Another consumer system of the same organization, with a key (and a signing secret)."""
        with self.db.session(write=True) as s:
            system, secret = add_system(s, fresh(s, self.w.consumer), signing=signing_required)
            _, key = credentials.create_key(s, CLI, system)
        self.keys[system.code] = key
        return system, key, secret

    def key_of(self, system: System | None) -> str:
        return self.w.key if system is None or system.code == self.w.system.code else self.keys[system.code]

    def call(self, method: str, path: str, *, system: System | None = None, key: str | None = None,
             headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        auth = {"Authorization": f"Bearer {key or self.key_of(system)}"}
        return self.http.request(method, BASE + path, headers={**auth, **(headers or {})}, **kw)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.call("POST", path, **kw)

    def signed(self, method: str, target: str, secret: str, key: str, body: bytes = b"",
               **sign: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                   **signing.signed_headers(secret, method, target, body, **sign)}
        return self.http.request(method, target, content=body, headers=headers)


def make_plane(db: Database, *, person_share: str = "conditional") -> Plane:
    ready(db)
    w = world(db, person_share=person_share)
    with db.session(write=True) as s:
        person = fresh(s, w.person)
        services = {mode: add_service(s, person, mode) for mode in ("verify", "api", "bulk")}
    services["query"] = w.person_service
    app = create_app(db.settings, db)
    app.state.secret = MASTER
    return Plane(db=db, w=w, http=TestClient(app), services=services)


def audit_head(db: Database) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.coalesce(func.max(AuditRecord.seq), 0))) or 0)


def audit_since(db: Database, seq: int) -> list[AuditRecord]:
    with db.session() as s:
        rows = s.scalars(select(AuditRecord).where(AuditRecord.seq > seq).order_by(AuditRecord.seq)).all()
        for r in rows:
            s.expunge(r)
        return list(rows)


def one_audit(db: Database, before: int, **expected: Any) -> AuditRecord:
    """The single record a call left, checked against `expected` columns."""
    records = [r for r in audit_since(db, before) if r.kind == "call"]
    assert len(records) == 1, [(r.seq, r.mode, r.status) for r in records]
    record = records[0]
    for name, value in expected.items():
        assert getattr(record, name) == value, (name, getattr(record, name), value)
    return record


def problem(response: httpx.Response, status: int, kind: str | None = None, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    if kind is not None:
        assert body["type"] == f"/problems/{kind}", body
    if field is not None:
        assert body.get("field") == field, body
    return body


def rows_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


def leaks(text: str, values: Sequence[Any]) -> list[str]:
    """Which of these stored values appear in a response text (a denial must carry none)."""
    return [str(v) for v in values if v is not None and len(str(v)) > 1 and str(v) in text]
