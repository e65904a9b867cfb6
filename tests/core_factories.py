"""Builders shared by the core tests (kit, accounts, catalog, store, api, cli).

The `db` fixture is module-scoped, so everything here makes unique names and codes: tests in one
module share a database, and the same test runs once per backend.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts import service as accounts
from onceonly.accounts.actor import Actor
from onceonly.accounts.models import User
from onceonly.catalog import orgs, service
from onceonly.catalog.models import Organization, Resource
from onceonly.catalog.schemas import OrgIn, ResourceSpec
from onceonly.kit.identifiers import make_uscc

CLI = Actor.cli()
_counter = itertools.count(secrets.randbelow(10**6) * 100)


def unique(prefix: str = "x") -> str:
    """A fresh lower-case identifier (valid as a resource or user name)."""
    return f"{prefix}_{next(_counter)}"


def new_uscc() -> str:
    """A valid, unused unified social credit code (the 8-char GB 11714 body varies)."""
    return make_uscc("1", "1", "341800", f"{next(_counter) % 10**8:08d}")


def add_org(session: Session, name: str | None = None, **extra: Any) -> Organization:
    return orgs.add_org(session, CLI, OrgIn(code=new_uscc(), name=name or unique("部门"), **extra))


def add_user(session: Session, role: str, org: Organization | None = None, ip: str | None = "10.0.0.9",
             ) -> tuple[User, Actor]:
    user, _ = accounts.create_user(session, CLI, unique(role), role, org.id if org else None)
    return user, accounts.actor_for(user, ip, via="api")


def fields(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """One field of every type; `id` is meant as the key."""
    return [
        {"name": "id", "title": "编号", "type": "string", "length": 20},
        {"name": "name", "title": "名称", "type": "string", "length": 100},
        {"name": "n", "title": "数量", "type": "integer"},
        {"name": "score", "title": "分值", "type": "number"},
        {"name": "born", "title": "日期", "type": "date"},
        {"name": "flag", "title": "标志", "type": "boolean"},
        {"name": "ts", "title": "时间", "type": "datetime"},
        *extra,
    ]


def spec(provider: Organization, name: str | None = None, **overrides: Any) -> ResourceSpec:
    data: dict[str, Any] = {
        "name": name or unique("res"), "title": "测试资源", "provider": provider.code,
        "catalog": f"3{provider.number:02d}", "share_type": "unconditional",
        "key_fields": ["id"], "query_fields": ["name"], "fields": fields(),
    }
    data.update(overrides)
    return ResourceSpec.model_validate(data)


def published(session: Session, provider: Organization, **overrides: Any) -> Resource:
    res = service.create_resource(session, CLI, spec(provider, **overrides))
    return service.publish_resource(session, CLI, res)


def lock_watchdog(db: Any, locker: Any, seconds: float = 15.0) -> Any:
    """A started timer that ends `locker`'s PostgreSQL session after `seconds`: a test holding a
    lock that a read on the event loop must not wait for then fails (the read finishes once
    the lock is gone) instead of hanging for good. `.cancel()` it when the test is done."""
    import threading

    from sqlalchemy import text

    pid = None if db.is_sqlite else locker.exec_driver_sql("SELECT pg_backend_pid()").scalar()

    def end() -> None:
        if pid is not None:
            with db.engine.connect() as admin:
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    timer = threading.Timer(seconds, end)
    timer.daemon = True
    timer.start()
    return timer
