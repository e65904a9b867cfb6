"""Accounts API: staff users, personal API tokens and the staff action log (read-only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from onceonly.accounts import repository as repo
from onceonly.accounts import service
from onceonly.accounts.models import ApiToken, User
from onceonly.accounts.schemas import (
    PasswordChange,
    StaffActionOut,
    TokenCreated,
    TokenIn,
    TokenOut,
    UserCreated,
    UserIn,
    UserOut,
)
from onceonly.catalog.orgs import get_org
from onceonly.catalog.schemas import Page
from onceonly.db import utcnow
from onceonly.deps import CurrentActor, DbSession
from onceonly.errors import NotFound, PermissionDenied

router = APIRouter(tags=["users"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not signed in"}, 403: {"description": "Role may not do this"},
    422: {"description": "Invalid input (problem+json names the field)"},
}


def user_out(u: User) -> UserOut:
    locked = bool(u.locked_until and u.locked_until > utcnow())
    return UserOut(username=u.username, display_name=u.display_name, role=u.role,
                   org=u.org.code if u.org else None, active=u.active, locked=locked,
                   last_login_at=u.last_login_at)


def token_out(t: ApiToken) -> TokenOut:
    return TokenOut(id=t.id, name=t.name, hint=t.hint, created_at=t.created_at, expires_at=t.expires_at,
                    revoked=t.revoked_at is not None)


@router.get("/me", response_model=UserOut, responses=ERRORS, summary="The calling staff member")
def me(session: DbSession, actor: CurrentActor) -> UserOut:
    return user_out(service.get_user(session, actor.username))


@router.get("/users", response_model=list[UserOut], responses=ERRORS)
def list_users(session: DbSession, actor: CurrentActor) -> list[UserOut]:
    if actor.role == "dept_admin":
        return [user_out(u) for u in repo.list_users(session, actor.org_id)]
    actor.require("user.manage")
    return [user_out(u) for u in repo.list_users(session)]


@router.post("/users", response_model=UserCreated, status_code=201, responses={**ERRORS, 409: {}})
def create_user(data: UserIn, session: DbSession, actor: CurrentActor) -> UserCreated:
    org_id = get_org(session, data.org).id if data.org else None
    user, password = service.create_user(session, actor, data.username, data.role, org_id, data.display_name)
    return UserCreated(**user_out(user).model_dump(), password=password)


@router.post("/users/{username}/disable", response_model=UserOut, responses=ERRORS)
def disable_user(username: str, session: DbSession, actor: CurrentActor) -> UserOut:
    user = service.get_user(session, username)
    service.set_active(session, actor, user, False)
    return user_out(user)


@router.post("/users/{username}/enable", response_model=UserOut, responses=ERRORS)
def enable_user(username: str, session: DbSession, actor: CurrentActor) -> UserOut:
    user = service.get_user(session, username)
    service.set_active(session, actor, user, True)
    return user_out(user)


@router.post("/me/password", status_code=204, responses=ERRORS, summary="Change your own password")
def change_password(data: PasswordChange, session: DbSession, actor: CurrentActor) -> None:
    service.change_own_password(session, actor, data.current_password, data.new_password)


@router.get("/me/tokens", response_model=list[TokenOut], responses=ERRORS)
def my_tokens(session: DbSession, actor: CurrentActor) -> list[TokenOut]:
    return [token_out(t) for t in repo.tokens_of(session, actor.user_id or 0)]


@router.post("/me/tokens", response_model=TokenCreated, status_code=201, responses=ERRORS,
             summary="Create a personal API token (shown once)")
def create_token(data: TokenIn, session: DbSession, actor: CurrentActor) -> TokenCreated:
    user = service.get_user(session, actor.username)
    row, token = service.create_api_token(session, actor, user, data.name, data.days)
    return TokenCreated(**token_out(row).model_dump(), token=token)


@router.delete("/me/tokens/{token_id}", status_code=204, responses={**ERRORS, 404: {}})
def revoke_token(token_id: int, session: DbSession, actor: CurrentActor) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or row.user_id != actor.user_id:
        raise NotFound(f"token {token_id} not found", field="token_id")
    service.revoke_api_token(session, actor, row)


@router.get("/audit/staff-actions", response_model=Page[StaffActionOut], tags=["audit"], responses=ERRORS,
            summary="Staff actions (auditors); there is no API that changes or deletes them")
def staff_actions(
    session: DbSession, actor: CurrentActor,
    username: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[StaffActionOut]:
    if not actor.can("audit.read"):
        raise PermissionDenied("only auditors and the security admin read the staff action log")
    rows, total = repo.actions(session, username=username, action=action, offset=offset, limit=limit)
    items = [StaffActionOut(id=r.id, at=r.at, username=r.username, action=r.action, target=r.target,
                            detail=r.detail, ip=r.ip, outcome=r.outcome) for r in rows]
    return Page[StaffActionOut](items=items, total=total, offset=offset, limit=limit)
