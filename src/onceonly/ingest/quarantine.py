"""Quarantined rows as a CSV a steward can open, correct and send back (`--resubmit BATCH`).

Columns: `_row` (the source row number, which resubmission uses to mark rows fixed), `_problems`
(every rule the row failed), then the file's own columns with the values as sent. UTF-8 with a
BOM so Excel shows the Chinese text."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from sqlalchemy.orm import Session

from onceonly.ingest import repository as repo


def rejections_csv(session: Session, batch_id: int) -> Iterator[str]:
    """Stream the CSV text of a batch's quarantined rows, a chunk of rows at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    # The columns of every rejected row, in file order: a short (ragged) row has fewer, so the
    # first row alone does not say. A first pass collects the names only (bounded memory).
    columns: dict[str, None] = {}
    for rej in repo.iter_rejections(session, batch_id):
        columns.update(dict.fromkeys(rej.raw))
    writer.writerow(["_row", "_problems", *columns])
    out = "\ufeff"
    for rej in repo.iter_rejections(session, batch_id):
        problems = "; ".join(f"{p['field']}: {p['zh']} [{p['rule']}]" for p in rej.problems)
        writer.writerow([rej.row_number, problems, *[_text(rej.raw.get(c)) for c in columns]])
        if buf.tell() > 1 << 16:
            yield out + buf.getvalue()
            out = ""
            buf.seek(0)
            buf.truncate()
    yield out + buf.getvalue()


def _text(value: object) -> str:
    return "" if value is None else str(value)
