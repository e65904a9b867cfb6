"""Ingest batches and their quarantined rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from onceonly.db import Base, UTCDateTime, utcnow


class Batch(Base):
    """One load of a file into a resource. `status`: running → committed | failed | interrupted.
    The counts, the rejections and the store changes of a committed batch commit together."""

    __tablename__ = "ingest_batches"
    __table_args__ = (Index("ix_ingest_batches_resource_id_id", "resource_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"))
    mode: Mapped[str] = mapped_column(String(10), default="upsert")
    status: Mapped[str] = mapped_column(String(12), default="running")
    source: Mapped[str] = mapped_column(String(10), default="file")
    file_name: Mapped[str] = mapped_column(String(255), default="")
    file_size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    format: Mapped[str | None] = mapped_column(String(10))
    encoding: Mapped[str | None] = mapped_column(String(20))
    sheet: Mapped[str | None] = mapped_column(String(100))
    read: Mapped[int] = mapped_column(BigInteger, default=0)
    inserted: Mapped[int] = mapped_column(BigInteger, default=0)
    updated: Mapped[int] = mapped_column(BigInteger, default=0)
    unchanged: Mapped[int] = mapped_column(BigInteger, default=0)
    deleted: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[int] = mapped_column(BigInteger, default=0)
    rule_counts: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    unmapped: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text)
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    resubmit_of: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str] = mapped_column(String(64), default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)


class Rejection(Base):
    """A quarantined source row: its raw values and every rule it failed."""

    __tablename__ = "ingest_rejections"
    __table_args__ = (Index("ix_ingest_rejections_batch_id_row_number", "batch_id", "row_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingest_batches.id", ondelete="CASCADE"))
    row_number: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[dict[str, Any]] = mapped_column(JSON)
    problems: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    resolved_by: Mapped[int | None] = mapped_column(Integer)
