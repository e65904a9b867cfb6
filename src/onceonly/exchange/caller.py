"""`ExchangeCaller`: the dependency every exchange data endpoint takes. It authenticates the
calling business system by its API key (`Authorization: Bearer <key>`) and, when the system
signs, by its HMAC-SM3 signature (signing.py), and returns the system."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from onceonly.db import utcnow
from onceonly.deps import DbSession
from onceonly.exchange import credentials, signing
from onceonly.exchange.errors import CallerRejected
from onceonly.exchange.models import System


async def request_body(request: Request) -> bytes:
    """The raw body (cached by Starlette, so the endpoint can still parse it)."""
    return await request.body()


def request_target(request: Request) -> str:
    """Path and query exactly as sent: what the client signed."""
    path = request.scope.get("raw_path") or request.url.path.encode("utf-8")
    query = request.scope.get("query_string") or b""
    target = path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


def presented_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("bearer "):
        raise CallerRejected("send the system's API key as `Authorization: Bearer <key>`")
    return auth[7:].strip()


def check_signature(session: Session, system: System, request: Request, body: bytes, now: datetime) -> None:
    signing.check_request(session, system, method=request.method, target=request_target(request),
                          headers=request.headers, body=body, master=request.app.state.secret, now=now)


def exchange_caller(request: Request, session: DbSession, body: Annotated[bytes, Depends(request_body)]) -> System:
    now = utcnow()
    system = credentials.authenticate_key(session, presented_key(request), now)
    check_signature(session, system, request, body, now)
    return system


ExchangeCaller = Annotated[System, Depends(exchange_caller)]
