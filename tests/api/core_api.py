"""An API client on the real app for one test database, with bearer tokens per role."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.testclient import TestClient

from core_factories import CLI, add_org, unique
from onceonly.accounts import service as accounts
from onceonly.app import create_app
from onceonly.catalog.orgs import get_org
from onceonly.db import Database
from onceonly.ops.setup import initialize

PROBLEM = "application/problem+json"
ORG_ROLES = ("steward", "reviewer", "dept_admin")


@dataclass
class Api:
    db: Database
    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, role: str, org_code: str | None = None) -> str:
        """A fresh user of `role` (in `org_code`, or a new org, for department roles) and its token."""
        with self.db.session() as s:
            org = None
            if role in ORG_ROLES:
                org = get_org(s, org_code) if org_code else add_org(s)
            user, _ = accounts.create_user(s, CLI, unique(role), role, org.id if org else None)
            _, token = accounts.create_api_token(s, CLI, user, "tests")
        return token

    def auth(self, role: str = "platform_admin", org_code: str | None = None) -> dict[str, str]:
        key = f"{role}:{org_code}"
        if key not in self.tokens:
            self.tokens[key] = self.token(role, org_code)
        return {"Authorization": f"Bearer {self.tokens[key]}"}


def make_api(db: Database) -> Api:
    initialize(db)
    return Api(db=db, client=TestClient(create_app(db.settings, db)))


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] and body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body
