"""The shapes passed between the stages of the ingest pipeline.

read (readers.py)   → Source: header + numbered raw rows, streamed
map (mapping.py)    → ColumnMap: which column feeds which field
coerce (coerce.py)  → typed values, or a Problem per bad cell
check (checks.py)   → Problems of a whole typed row (required, length, code list, built-in
                      checks, cross-field rules)

A row the reader could not line up with the header (ragged CSV row, malformed JSON line, JSON
object with keys the first object did not have) is yielded as a `BadRow`: a list of its raw
cells that also carries the Problems found while reading; the checker reports them with the
rest of the row's problems, so such rows are rejected one by one, never fatal for the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One rule a value broke. `rule` is a stable id such as `citizen_id.check_digit`."""

    field: str
    rule: str
    zh: str
    en: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "zh": self.zh, "en": self.en}


class IngestInputError(Exception):
    """The file as a whole cannot be read (encoding, format, sheet, header): nothing is written.
    `row` is the 1-based source row when the problem is tied to one."""

    def __init__(self, rule: str, zh: str, en: str, row: int | None = None) -> None:
        self.rule, self.zh, self.en, self.row = rule, zh, en, row
        where = f"row {row}: " if row is not None else ""
        super().__init__(f"{where}{zh} / {en}")


class BadRow(list[Any]):
    """Raw cells of a row with reading problems (`row.ragged`, `row.json`, `row.extra_keys`).
    `aligned` is True when the cells still line up with the header (so the other cells are
    validated too), False when they cannot be trusted (only the reading problems are reported)."""

    __slots__ = ("aligned", "problems")

    def __init__(self, cells: list[Any], problems: list[Problem], aligned: bool = False) -> None:
        super().__init__(cells)
        self.problems = problems
        self.aligned = aligned


@dataclass
class Source:
    """A readable file: its header and an iterator of (source row number, raw cell values).
    Row numbers count physical rows as a person sees them in the file (the header is row 1)."""

    header: list[str]
    rows: Iterator[tuple[int, list[Any]]]
    format: str
    encoding: str | None = None
    sheet: str | None = None
    size: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        closer = self.info.get("close")
        if callable(closer):
            closer()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class ColumnMap:
    """Source column index → field name, plus what did not map."""

    columns: dict[int, str]
    unmapped: list[str]
    missing_required: list[str]
    ignored: list[str] = field(default_factory=list)  # columns an explicit mapping maps to null
    unused_mapping: list[str] = field(default_factory=list)  # explicit entries naming no column
    how: dict[int, str] = field(default_factory=dict)  # column → "explicit" / "exact" / "normalized"
