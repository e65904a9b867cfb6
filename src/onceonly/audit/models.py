"""Audit tables: the hash-chained records, the single-row chain head, signed checkpoints and
the signed anchors that retention pruning leaves behind.

Triggers (migration 0003) refuse UPDATE and DELETE on records, checkpoints and anchors; the one
exception is pruning records that a signed anchor covers and that are older than 180 days."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from onceonly.db import Base, UTCDateTime

GENESIS = "0" * 64  # prev_hash of the first record


class AuditRecord(Base):
    """One audited event: an exchange call (kind "call"), a staff action (kind "staff"), or the end
    of a streamed export (kind "delivery": what was actually sent, after the call's record).

    `hash` = SM3 of the canonical form of every other column including `prev_hash` (see
    canonical.py and docs/audit.md); `seq` is gapless and assigned under the head lock."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_at", "at"),
        Index("ix_audit_records_system_seq", "system", "seq"),
        Index("ix_audit_records_service_seq", "service", "seq"),
        Index("ix_audit_records_kind_seq", "kind", "seq"),
    )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(8))
    system: Mapped[str | None] = mapped_column(String(64))
    org: Mapped[str | None] = mapped_column(String(40))
    username: Mapped[str | None] = mapped_column(String(64))
    service: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str | None] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(200))
    purpose: Mapped[str | None] = mapped_column(String(200))
    request_digest: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer)
    records: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    latency_ms: Mapped[int | None] = mapped_column(BigInteger)
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The one row (id 1) holding the last seq and hash: writers lock it (FOR UPDATE on
    PostgreSQL; SQLite's single writer lock does the same), so the chain stays linear across
    processes. `checkpoint_seq` is the seq of the newest checkpoint."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    checkpoint_seq: Mapped[int] = mapped_column(BigInteger)


class AuditCheckpoint(Base):
    """(seq, hash, time) of the chain signed with the platform's SM2 key."""

    __tablename__ = "audit_checkpoints"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))


class AuditAnchor(Base):
    """Left by retention pruning: the seq and hash of the last pruned record, signed, so the
    remaining chain still verifies from it. Records up to `seq` may then be deleted."""

    __tablename__ = "audit_anchors"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    cutoff: Mapped[datetime] = mapped_column(UTCDateTime)
    pruned: Mapped[int] = mapped_column(BigInteger)
    key_id: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(128))
