"""Property-based fuzzing of the whole /api/v1 from the app's own OpenAPI document (schemathesis):
every operation gets generated input — staff routes as a platform administrator, exchange-system
routes (the data plane, subscriptions) with a system key whose grants cover every mode — and
none may answer with a server error. Bounded so that a run takes about a minute on both
databases; every failing operation is listed, not just the first."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exchange"))

from test_exchange_data_kit import Plane, make_plane

from core_factories import CLI, unique
from onceonly.accounts import service as accounts
from onceonly.db import Database

EXAMPLES = 30
SYSTEM_ROUTES = ("/api/v1/exchange/{service}/", "/api/v1/exchange/subscriptions")
DATA_MODES = {"verify": "verify", "records": "query", "export": "bulk", "changes": "bulk"}


class Target:
    """The app under test and its credentials."""

    def __init__(self, db: Database) -> None:
        self.plane: Plane = make_plane(db)
        roomy = {"daily_quota": 10_000_000, "rate_limit": 100_000}
        for mode in ("verify", "query", "api", "bulk"):
            self.plane.grant(mode, ["citizen_id", "name", "region", "household", "note"], masking={}, **roomy)
        with db.session(write=True) as s:
            admin, _ = accounts.create_user(s, CLI, unique("admin"), "platform_admin", None)
            _, self.staff_token = accounts.create_api_token(s, CLI, admin, "fuzz")
        self.app = self.plane.http.app

    def headers(self, path: str) -> dict[str, str]:
        token = self.plane.w.key if path.startswith(SYSTEM_ROUTES) else self.staff_token
        return {"Authorization": f"Bearer {token}"}

    def path_parameters(self, path: str, method: str, given: dict[str, Any] | None) -> dict[str, Any] | None:
        """Data-plane calls go to the service of their mode (random codes would only reach 404);
        the fuzzer never deletes its own token."""
        if path == "/api/v1/me/tokens/{token_id}" and method == "DELETE":
            return {"token_id": 2**62}
        if given is None or "service" not in given or not path.startswith("/api/v1/exchange/{service}/"):
            return given
        tail = path.removeprefix("/api/v1/exchange/{service}/").split("/")[0]
        mode = "api" if path.endswith("{key}") else DATA_MODES.get(tail, "query")
        return {**given, "service": self.plane.code(mode)}


@pytest.fixture(scope="module")
def target(db: Database) -> Iterator[Target]:
    t = Target(db)
    yield t
    t.plane.http.close()


def _fuzz(target: Target, operation: Any) -> str | None:
    """None, or how the first server error of this operation came about."""
    failures: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        method = case.method.upper()
        case.path_parameters = target.path_parameters(operation.path, method, case.path_parameters)
        try:  # the test client re-raises what the app did not handle
            response = case.call(headers={**(case.headers or {}), **target.headers(operation.path)})
        except Exception as exc:
            failures.append(f"{method} {operation.path} params={case.path_parameters} query={case.query} "
                            f"body={str(case.body)[:200]} -> {type(exc).__name__}: {str(exc)[:300]}")
            return
        if response.status_code >= 500 and not failures:
            failures.append(f"{method} {response.request.url} body={str(case.body)[:200]} -> "
                            f"{response.status_code}: {response.text[:300]}")

    run()
    return failures[0] if failures else None


def test_no_server_errors(target: Target) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.app).include(path_regex=r"^/api/v1/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 60
    failures = [f for f in (_fuzz(target, op) for op in operations) if f]
    assert not failures, "\n".join(failures)
