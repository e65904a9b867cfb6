"""Export formats: each turns chunks of wire-form tuples (store.reading) into bytes as they
come, so an export of any size streams with bounded memory. CSV goes through the csv module on
a reused buffer (the fast path: a chunk is one `writerows`); JSON Lines gives typed JSON values;
Parquet writes one row group per chunk with pyarrow and the footer at the end."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from onceonly.kit.masking import mask

Rows = list[tuple[Any, ...]]
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/jsonl; charset=utf-8",
                 "parquet": "application/vnd.apache.parquet"}
BOM = "\ufeff"


class Writer(Protocol):
    def header(self) -> bytes: ...

    def rows(self, rows: Rows) -> bytes: ...

    def close(self) -> bytes: ...


def _masker(types: Sequence[str], masks: dict[int, str]) -> Callable[[Rows], Rows]:
    """Masks the masked columns of a chunk (Python touches only those)."""
    if not masks:
        return lambda rows: rows

    def apply(rows: Rows) -> Rows:
        out = []
        for row in rows:
            values = list(row)
            for i, rule in masks.items():
                values[i] = mask(values[i], rule)
            out.append(tuple(values))
        return out
    return apply


class CsvWriter:
    """RFC 4180 CSV (CRLF), a header row of column names; an empty cell is null; booleans
    `true`/`false`. With `bom`, a UTF-8 byte-order mark first, so Excel reads it as UTF-8."""

    def __init__(self, columns: Sequence[str], types: Sequence[str], masks: dict[int, str], bom: bool) -> None:
        self.columns, self.bom = list(columns), bom
        self.buffer = io.StringIO()
        self.writer = csv.writer(self.buffer)
        self.masked = _masker(types, masks)

    def _take(self) -> bytes:
        data = self.buffer.getvalue().encode("utf-8")
        self.buffer.seek(0)
        self.buffer.truncate()
        return data

    def header(self) -> bytes:
        if self.bom:
            self.buffer.write(BOM)
        self.writer.writerow(self.columns)
        return self._take()

    def rows(self, rows: Rows) -> bytes:
        self.writer.writerows(self.masked(rows))
        return self._take()

    def close(self) -> bytes:
        return b""


class JsonLinesWriter:
    """One JSON object per line (UTF-8), keys in column order, typed values."""

    def __init__(self, columns: Sequence[str], types: Sequence[str], masks: dict[int, str]) -> None:
        self.columns = list(columns)
        self.masked = _masker(types, masks)
        self.bools = [i for i, t in enumerate(types) if t == "boolean" and i not in masks]

    def header(self) -> bytes:
        return b""

    def rows(self, rows: Rows) -> bytes:
        columns, bools, dumps = self.columns, self.bools, json.dumps
        lines = []
        for row in self.masked(rows):
            if bools:
                values = list(row)
                for i in bools:
                    if values[i] is not None:
                        values[i] = values[i] == "true"
                row = tuple(values)
            lines.append(dumps(dict(zip(columns, row, strict=True)), ensure_ascii=False))
        lines.append("")
        return "\n".join(lines).encode("utf-8") if rows else b""

    def close(self) -> bytes:
        return b""


class _Sink:
    """A write-only file for pyarrow whose bytes are taken out after each row group."""

    closed = False

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.parts.append(chunk)
        self.position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts = []
        return data


class ParquetWriter:
    """Parquet with the fields' types (text for masked fields), a row group per chunk."""

    def __init__(self, columns: Sequence[str], types: Sequence[str], masks: dict[int, str]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        arrow = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(), "boolean": pa.bool_(),
                 "date": pa.date32(), "datetime": pa.timestamp("us", tz="UTC")}
        self.types = [arrow["string"] if i in masks else arrow[t] for i, t in enumerate(types)]
        self.cast = [i not in masks and t in ("boolean", "date", "datetime") for i, t in enumerate(types)]
        self.schema = pa.schema(list(zip(columns, self.types, strict=True)))
        self.masked = _masker(types, masks)
        self.sink = _Sink()
        self.writer = pq.ParquetWriter(self.sink, self.schema, compression="zstd")

    def header(self) -> bytes:
        return b""

    def rows(self, rows: Rows) -> bytes:
        pa = self.pa
        arrays = []
        for i, values in enumerate(zip(*self.masked(rows), strict=True)):
            if self.cast[i]:  # wire text ('true', '2026-01-02', '…Z') read by Arrow's own parsers
                arrays.append(pa.array(values, type=pa.string()).cast(self.types[i]))
            else:
                arrays.append(pa.array(values, type=self.types[i]))
        self.writer.write_batch(pa.record_batch(arrays, schema=self.schema))
        return self.sink.take()

    def close(self) -> bytes:
        self.writer.close()
        return self.sink.take()


def writer_for(fmt: str, columns: Sequence[str], types: Sequence[str], masks: dict[int, str], bom: bool) -> Writer:
    if fmt == "csv":
        return CsvWriter(columns, types, masks, bom)
    if fmt == "jsonl":
        return JsonLinesWriter(columns, types, masks)
    return ParquetWriter(columns, types, masks)
