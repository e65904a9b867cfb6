"""Shared FastAPI dependencies: the database session per request and the calling staff actor.

The request owns the transaction: `get_session` commits after the endpoint returns (before the
response goes out) and rolls back on any error, so services only flush."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from onceonly.accounts import service as accounts
from onceonly.accounts.actor import Actor
from onceonly.db import Database
from onceonly.errors import AuthenticationRequired
from onceonly.settings import Settings


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def get_session(request: Request, db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    with db.session(write=request.method not in SAFE_METHODS) as session:
        yield session


# scope="function": commit (or roll back) when the endpoint returns, before the response is sent,
# so a client never sees success for a transaction that then fails to commit.
DbSession = Annotated[Session, Depends(get_session, scope="function")]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def current_actor(request: Request, session: DbSession) -> Actor:
    """A staff member by personal API token (Bearer) or, for the web, by session cookie."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        token_user = accounts.resolve_api_token(session, auth[7:].strip())
        return accounts.actor_for(token_user, client_ip(request), via="api")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        settings: Settings = request.app.state.settings
        user = accounts.resolve_web_session(session, cookie, settings.session_idle_minutes)
        if user is not None:
            if request.method not in SAFE_METHODS:
                # A browser sends the cookie on its own; a change made with it needs the page's token.
                from onceonly.web.csrf import CSRF_HEADER, verify

                verify(request, request.headers.get(CSRF_HEADER))
            return accounts.actor_for(user, client_ip(request), via="web")
    raise AuthenticationRequired("sign in, or send `Authorization: Bearer <personal API token>`")


SESSION_COOKIE = "onceonly_session"
CurrentActor = Annotated[Actor, Depends(current_actor)]
