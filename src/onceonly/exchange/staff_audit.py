"""The one place exchange staff actions are audited: every decision and every change to
systems, credentials, services and grants goes through `audit`, in the caller's transaction,
so the change and its record commit together or not at all. Kept as a single wrapper so the
audit backend is switched on one line."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor


def audit(session: Session, actor: Actor, action: str, target: str, detail: dict[str, Any] | None = None,
          *, service: str | None = None) -> None:
    """`service`: the exchange service concerned, so auditors can follow one service's history."""
    from onceonly.audit.service import record_staff_action

    record_staff_action(session, actor=actor, action=action, target=target, detail=detail, service=service)
