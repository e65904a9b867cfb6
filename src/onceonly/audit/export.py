"""Export records as CSV or JSON Lines, streamed in chunks (bounded memory).

Both carry every stored field with `time` in its canonical text, so an auditor can recompute
each hash from the export alone: in JSON Lines drop `hash` from a line and hash the canonical
JSON of the rest; in CSV `detail` is already the canonical JSON text of the detail object."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from onceonly.audit.canonical import FIELDS, dumps, iso_time

Format = Literal["csv", "jsonl"]
COLUMNS = (*FIELDS, "hash")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
_FLUSH = 1 << 16


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in COLUMNS}
    out["time"] = iso_time(row["time"])
    return out


def chunks(rows: Iterable[dict[str, Any]], fmt: Format) -> Iterator[str]:
    """The export text, about 64 KiB at a time."""
    buf = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            plain = _plain(row)
            plain["detail"] = dumps(plain["detail"])
            writer.writerow(["" if plain[k] is None else plain[k] for k in COLUMNS])
            if buf.tell() > _FLUSH:
                yield _drain(buf)
    else:
        for row in rows:
            buf.write(json.dumps(_plain(row), ensure_ascii=False, separators=(",", ":")))
            buf.write("\n")
            if buf.tell() > _FLUSH:
                yield _drain(buf)
    yield _drain(buf)


def _drain(buf: io.StringIO) -> str:
    text = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return text
