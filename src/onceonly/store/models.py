"""The change log: one ordered record per insert, update or delete in any resource table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from onceonly.db import Base, UTCDateTime, utcnow


class ChangeLog(Base):
    """Sequence is per resource and strictly increasing; (resource_id, seq) is the primary key,
    so "changes since N" is a range scan on that index."""

    __tablename__ = "change_log"

    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    op: Mapped[str] = mapped_column(String(1))  # I, U, D
    row_key: Mapped[str] = mapped_column(Text)
    batch_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
