"""Every query of the accounts domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from onceonly.accounts.models import ApiToken, StaffAction, User, WebSession


def user_by_name(session: Session, username: str, *, for_update: bool = False) -> User | None:
    """`for_update` locks the row (PostgreSQL) so concurrent logins count failures one by one."""
    stmt = select(User).where(User.username == username)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalar(stmt)


def user_by_id(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def list_users(session: Session, org_id: int | None = None) -> Sequence[User]:
    stmt = select(User).order_by(User.username)
    if org_id is not None:
        stmt = stmt.where(User.org_id == org_id)
    return session.scalars(stmt).all()


def token_by_hash(session: Session, token_hash: str) -> ApiToken | None:
    return session.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))


def tokens_of(session: Session, user_id: int) -> Sequence[ApiToken]:
    return session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)).all()


def web_session_by_hash(session: Session, token_hash: str) -> WebSession | None:
    return session.scalar(select(WebSession).where(WebSession.token_hash == token_hash))


def actions(
    session: Session, *, username: str | None = None, action: str | None = None,
    since: datetime | None = None, offset: int = 0, limit: int = 100,
) -> tuple[Sequence[StaffAction], int]:
    stmt = select(StaffAction)
    if username:
        stmt = stmt.where(StaffAction.username == username)
    if action:
        stmt = stmt.where(StaffAction.action.like(f"{action}%"))
    if since:
        stmt = stmt.where(StaffAction.at >= since)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.scalars(stmt.order_by(StaffAction.id.desc()).offset(offset).limit(limit)).all()
    return rows, total
