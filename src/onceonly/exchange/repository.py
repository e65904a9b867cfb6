"""Every query of the exchange domain. Row scoping (who sees which applications and grants)
sits in `scoped`: platform roles see everything, department roles what their organization
provides or consumes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from onceonly.accounts.actor import Actor
from onceonly.accounts.roles import ORG_ROLES
from onceonly.errors import ConfigError
from onceonly.exchange.models import Application, Credential, Grant, Nonce, Service, System, Usage
from onceonly.store.driver_statement import driver_fetchone, statement


def _dialect(executor: Session | Connection) -> str:
    return executor.dialect.name if isinstance(executor, Connection) else executor.get_bind().dialect.name


def _insert(executor: Session | Connection) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (SQLite ≥ 3.24 and PostgreSQL alike)."""
    return postgresql.insert if _dialect(executor) == "postgresql" else sqlite.insert


# -- systems and credentials -------------------------------------------------------------------

def system_by_code(session: Session, code: str) -> System | None:
    return session.scalar(select(System).where(System.code == code))


def systems(session: Session, org_id: int | None = None) -> Sequence[System]:
    stmt = select(System).order_by(System.code)
    if org_id is not None:
        stmt = stmt.where(System.org_id == org_id)
    return session.scalars(stmt).all()


def credential_by_id(session: Session, credential_id: int) -> Credential | None:
    return session.get(Credential, credential_id)


def credentials_by_prefix(session: Session, prefix: str) -> Sequence[Credential]:
    return session.scalars(select(Credential).where(Credential.prefix == prefix)).all()


def touch_credential(session: Session | Connection, credential_id: int, now: datetime) -> None:
    session.execute(update(Credential).where(Credential.id == credential_id).values(last_used_at=now))


def credentials_of(session: Session, system_id: int) -> Sequence[Credential]:
    return session.scalars(select(Credential).where(Credential.system_id == system_id).order_by(Credential.id)).all()


def claim_nonce(session: Session, system_id: int, nonce: str, expires_at: datetime) -> bool:
    """Insert the nonce unless the system used it already; True if it was new. Atomic across
    processes: a concurrent insert of the same nonce waits for the first and then does nothing."""
    stmt = (_insert(session)(Nonce).values(system_id=system_id, nonce=nonce, expires_at=expires_at)
            .on_conflict_do_nothing(index_elements=["system_id", "nonce"]).returning(Nonce.id))
    return session.execute(stmt).first() is not None


def prune_nonces(session: Session, system_id: int, now: datetime) -> int:
    result = session.execute(delete(Nonce).where(Nonce.system_id == system_id, Nonce.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)


# -- services ----------------------------------------------------------------------------------

def service_by_code(session: Session, code: str) -> Service | None:
    return session.scalar(select(Service).where(Service.code == code))


def services(session: Session, *, provider_org_id: int | None = None, resource_id: int | None = None,
             mode: str | None = None, status: str | None = None) -> Sequence[Service]:
    stmt = select(Service).order_by(Service.code)
    if provider_org_id is not None:
        stmt = stmt.where(Service.provider_org_id == provider_org_id)
    if resource_id is not None:
        stmt = stmt.where(Service.resource_id == resource_id)
    if mode is not None:
        stmt = stmt.where(Service.mode == mode)
    if status is not None:
        stmt = stmt.where(Service.status == status)
    return session.scalars(stmt).all()


def max_service_id(session: Session) -> int:
    return int(session.scalar(select(func.max(Service.id))) or 0)


# -- applications and grants -------------------------------------------------------------------

def scoped(stmt: Select[Any], model: type[Application] | type[Grant], actor: Actor) -> Select[Any]:
    """Department roles see rows their organization consumes or provides; others see all."""
    if actor.via != "cli" and actor.role in ORG_ROLES:
        return stmt.where(or_(model.consumer_org_id == actor.org_id, model.provider_org_id == actor.org_id))
    return stmt


def application_by_id(session: Session, application_id: int, *, for_update: bool = False) -> Application | None:
    """`for_update` locks the row (PostgreSQL): two reviewers deciding at once go one by one."""
    stmt = select(Application).where(Application.id == application_id)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def pending_application(session: Session, system_id: int, service_id: int) -> Application | None:
    return session.scalar(select(Application).where(
        Application.system_id == system_id, Application.service_id == service_id,
        Application.status.in_(("pending_provider", "pending_operator"))))


def applications(
    session: Session, actor: Actor, *, consumer_org_id: int | None = None, provider_org_id: int | None = None,
    status: str | None = None, offset: int = 0, limit: int = 100,
) -> tuple[Sequence[Application], int]:
    stmt = scoped(select(Application), Application, actor)
    if consumer_org_id is not None:
        stmt = stmt.where(Application.consumer_org_id == consumer_org_id)
    if provider_org_id is not None:
        stmt = stmt.where(Application.provider_org_id == provider_org_id)
    if status is not None:
        stmt = stmt.where(Application.status == status)
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    rows = session.scalars(stmt.order_by(Application.id.desc()).offset(offset).limit(limit)
                           .options(selectinload(Application.decisions))).all()
    return rows, total


def grant_by_id(session: Session, grant_id: int) -> Grant | None:
    return session.get(Grant, grant_id)


def latest_grant(session: Session, system_id: int, service_id: int) -> Grant | None:
    """The newest grant of a system for a service (a newer grant supersedes older ones)."""
    return session.scalar(select(Grant).where(Grant.system_id == system_id, Grant.service_id == service_id)
                          .order_by(Grant.id.desc()).limit(1))


def live_grants(session: Session, system_id: int, service_id: int) -> Sequence[Grant]:
    return session.scalars(select(Grant).where(Grant.system_id == system_id, Grant.service_id == service_id,
                                               Grant.revoked_at.is_(None))).all()


def grants(
    session: Session, actor: Actor, *, system_id: int | None = None, service_id: int | None = None,
    include_revoked: bool = False, offset: int = 0, limit: int = 100,
) -> tuple[Sequence[Grant], int]:
    stmt = scoped(select(Grant), Grant, actor)
    if system_id is not None:
        stmt = stmt.where(Grant.system_id == system_id)
    if service_id is not None:
        stmt = stmt.where(Grant.service_id == service_id)
    if not include_revoked:
        stmt = stmt.where(Grant.revoked_at.is_(None))
    total = int(session.scalar(select(func.count()).select_from(stmt.subquery())) or 0)
    return session.scalars(stmt.order_by(Grant.id.desc()).offset(offset).limit(limit)).all(), total


# -- usage counters ----------------------------------------------------------------------------

_ADD_USAGE: dict[str, Any] = {}


def _add_usage_statement(session: Session | Connection) -> Any:
    """The counter upsert, built once per dialect with bound parameters: it runs on every
    exchange call, and building it (with its `excluded` alias) each time cost a seventh of a
    call's CPU."""
    name = _dialect(session)
    stmt = _ADD_USAGE.get(name)
    if stmt is None:
        ins = _insert(session)(Usage).values(grant_id=bindparam("g"), period=bindparam("p"), bucket=bindparam("b"),
                                             calls=bindparam("c"), records=bindparam("r"))
        stmt = ins.on_conflict_do_update(
            index_elements=["grant_id", "period", "bucket"],
            set_={"calls": Usage.calls + ins.excluded.calls, "records": Usage.records + ins.excluded.records},
        ).returning(Usage.calls, Usage.records)
        _ADD_USAGE[name] = stmt
    return stmt


def add_usage(session: Session | Connection, grant_id: int, period: str, bucket: int, calls: int,
              records: int) -> tuple[int, int]:
    """Add to a counter row and return its new (calls, records): one atomic upsert, so
    concurrent workers never lose an increment (PostgreSQL locks the row until commit). On a
    Connection (the audit writer's group commit) it runs on the driver."""
    values = {"g": grant_id, "p": period, "b": bucket, "c": calls, "r": records}
    if isinstance(session, Connection):
        got = statement(session, "usage-add", lambda: _add_usage_statement(session), values).first(session, values)
        if got is None:
            raise RuntimeError("the usage upsert returned no row")
        return int(got["calls"]), int(got["records"])
    row = session.execute(_add_usage_statement(session), values).one()
    return int(row[0]), int(row[1])


_USAGE = select(Usage.calls, Usage.records).where(
    Usage.grant_id == bindparam("g"), Usage.period == bindparam("p"), Usage.bucket == bindparam("b"))


def usage(session: Session, grant_id: int, period: str, bucket: int) -> tuple[int, int]:
    row = session.connection().execute(_USAGE, {"g": grant_id, "p": period, "b": bucket}).first()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def prune_usage(session: Session | Connection, grant_id: int, period: str, before: int) -> None:
    session.execute(delete(Usage).where(Usage.grant_id == grant_id, Usage.period == period, Usage.bucket < before))


_EPOCH_SQL = "SELECT token FROM exchange_epoch WHERE id = 1"


def epoch_token(conn: Connection) -> int:
    """The metadata epoch token (snapshot.py) in the connection's transaction. Read on every
    exchange call, so straight on the driver: a constant statement with nothing to bind."""
    row, _ = driver_fetchone(conn, _EPOCH_SQL)
    if row is None:
        raise ConfigError("the exchange epoch row is missing: run `onceonly init`")
    return int(row[0])
