"""Every query of the ingest domain."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.orm import Session

from onceonly.ingest.models import Batch, Rejection


def batch(session: Session, batch_id: int) -> Batch | None:
    return session.get(Batch, batch_id)


def batches_of(session: Session, resource_ids: Sequence[int], limit: int = 50) -> Sequence[Batch]:
    return session.scalars(select(Batch).where(Batch.resource_id.in_(resource_ids))
                           .order_by(Batch.id.desc()).limit(limit)).all()


def add_rejections(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(Rejection), rows)


def first_rejections(session: Session, batch_id: int, limit: int) -> Sequence[Rejection]:
    return session.scalars(select(Rejection).where(Rejection.batch_id == batch_id)
                           .order_by(Rejection.row_number, Rejection.id).limit(limit)).all()


def rejections(session: Session, batch_id: int, offset: int = 0, limit: int = 100) -> tuple[Sequence[Rejection], int]:
    total = session.scalar(select(func.count()).where(Rejection.batch_id == batch_id)) or 0
    rows = session.scalars(select(Rejection).where(Rejection.batch_id == batch_id)
                           .order_by(Rejection.row_number, Rejection.id).offset(offset).limit(limit)).all()
    return rows, total


def iter_rejections(session: Session, batch_id: int, chunk: int = 2000) -> Iterator[Rejection]:
    """All quarantined rows of a batch in row order, a chunk at a time (bounded memory). Keyed on
    (row number, id): a resubmission may quarantine two rows under one row number."""
    last_row, last_id = -1, 0
    while True:
        after = or_(Rejection.row_number > last_row, and_(Rejection.row_number == last_row, Rejection.id > last_id))
        rows = session.scalars(select(Rejection).where(Rejection.batch_id == batch_id, after)
                               .order_by(Rejection.row_number, Rejection.id).limit(chunk)).all()
        if not rows:
            return
        yield from rows
        last_row, last_id = rows[-1].row_number, rows[-1].id
        session.expunge_all()


def resolve(session: Session, batch_id: int, row_numbers: Iterable[int], by_batch: int) -> int:
    numbers = list(row_numbers)
    done = 0
    for i in range(0, len(numbers), 1000):
        result = session.execute(update(Rejection).where(Rejection.batch_id == batch_id,
                                                         Rejection.row_number.in_(numbers[i:i + 1000]))
                                 .values(resolved_by=by_batch))
        done += int(getattr(result, "rowcount", 0) or 0)
    return done


def running_batches(session: Session) -> Sequence[Batch]:
    return session.scalars(select(Batch).where(Batch.status == "running")).all()
