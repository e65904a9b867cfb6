"""Open an uploaded file as a `Source`: a checked header and a lazy stream of numbered rows.

Formats (from the suffix, or `fmt`): ``.csv``/``.txt`` (delimiter sniffed from the header line
among comma, tab, semicolon and ``|``), ``.tsv``, ``.xlsx``/``.xlsm``, legacy ``.xls``,
``.jsonl``/``.ndjson`` and ``.json`` (a top-level array of objects).

Memory. CSV and JSON are streamed: only the current row is held, whatever the file size (a 2 GB
CSV reads like a 2 MB one). Workbooks cannot be streamed: python-calamine loads the chosen sheet,
so .xlsx/.xls files above `MAX_WORKBOOK_BYTES` are refused with `file.too_large` (save as CSV).

Row numbers are what a person sees: for CSV and workbooks the header is row 1 and empty lines
(skipped) still count, so row N is line/row N in Excel; for JSON Lines it is the line number; for
a JSON array the 1-based position of the object in the array.

Header rules (all formats): cells are trimmed (ASCII, U+3000 and zero-width spaces); empty cells
at the end of the header are dropped; an empty cell before the last named one is `header.empty`
(merged header cells and title rows above the header produce these, and the message says so);
the same header twice is `header.duplicate`. A file with no header at all is `file.empty`; a
header-only file is a Source with no rows.

Row rules: a row with more cells than the header (beyond trailing empty ones) or fewer is
yielded as a `BadRow` with `row.ragged` (rejected alone, the batch goes on). JSON Lines: a
malformed or non-object line is a `BadRow` with `row.json`, unless it is the first one (then there
is no header: `json.malformed`/`json.not_object`); an object with keys the first one lacked is a
`BadRow` with `row.extra_keys` whose known cells are still checked. A JSON array that breaks off
(truncated, trailing garbage) fails the batch with `json.malformed`: the parser cannot resync.

Formula cells in workbooks yield the value Excel cached when it saved the file; a formula never
calculated (e.g. written by a script) has none and reads as empty.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import json
import zipfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from onceonly.ingest.coerce import clean_text
from onceonly.ingest.encoding import (
    SAMPLE_SIZE,
    binary_error,
    decode_error,
    detect_encoding,
    looks_binary,
    resolve_encoding,
    uncertain_error,
)
from onceonly.ingest.types import BadRow, IngestInputError, Problem, Source

FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".xlsx": "xlsx", ".xlsm": "xlsx", ".xls": "xls",
           ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
FORMAT_ALIASES = {"csv": "csv", "txt": "csv", "tsv": "tsv", "xlsx": "xlsx", "xlsm": "xlsx", "xls": "xls",
                  "jsonl": "jsonl", "ndjson": "jsonl", "json": "json"}
MAX_WORKBOOK_BYTES = 256 * 1024 * 1024
MAX_FIELD_CHARS = 16 * 1024 * 1024
# Lines are read at most this long: a file with no line breaks (zeros, a dump) must not become
# one string of its whole size. A longer line arrives in pieces; a CSV piece without quotes then
# holds a cell over MAX_FIELD_CHARS (refused as such), a JSON Lines piece is not valid JSON.
MAX_LINE_CHARS = 2 * MAX_FIELD_CHARS
_DELIMITERS = (",", "\t", ";", "|")
_READ_BUFFER = 1024 * 1024
_TEXT_CHUNK = 64 * 1024
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def open_source(path: Path, *, fmt: str | None = None, encoding: str | None = None,
                sheet: str | None = None) -> Source:
    """Open `path` for reading; raises IngestInputError for anything that makes the whole file
    unreadable. Close the Source (or use it as a context manager) when done."""
    path = Path(path)
    kind = detect_format(path, fmt)
    enc = resolve_encoding(encoding) if encoding else None
    try:
        if not path.is_file():
            raise FileNotFoundError(2, "not a file")
        size = path.stat().st_size
        if size == 0:
            raise _empty()
        if kind in ("xlsx", "xls"):
            return _open_workbook(path, kind, sheet, size)
        if kind == "jsonl":
            return _open_jsonl(path, enc, size)
        if kind == "json":
            return _open_json(path, enc, size)
        return _open_delimited(path, kind, enc, size)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise IngestInputError("file.unreadable", f"无法读取文件 {path.name}：{reason}",
                               f"cannot read the file {path.name}: {reason}") from None


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        kind = FORMAT_ALIASES.get(fmt.strip().lower().lstrip("."))
        if kind is None:
            raise IngestInputError("file.format", f"不支持的格式“{fmt}”；可用：{', '.join(FORMAT_ALIASES)}",
                                   f"unsupported format {fmt!r}; use one of {', '.join(FORMAT_ALIASES)}")
        return kind
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise IngestInputError(
            "file.format", f"无法从扩展名“{path.suffix}”判断文件格式；支持 {' '.join(FORMATS)}，或用 --format 指明",
            f"cannot tell the format from the suffix {path.suffix!r}; supported: {' '.join(FORMATS)}, or give --format")
    return kind


# --- shared ---------------------------------------------------------------------------------


def _empty(sheet: str | None = None) -> IngestInputError:
    if sheet is not None:
        return IngestInputError("file.empty", f"工作表“{sheet}”是空的：没有表头行",
                                f"sheet {sheet!r} is empty: there is no header row")
    return IngestInputError("file.empty", "文件是空的：没有表头行", "the file is empty: there is no header row")


def column_letter(i: int) -> str:
    """0 → A, 25 → Z, 26 → AA (as Excel names columns)."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return clean_text(str(value))


def check_header(cells: list[Any], row: int, *, col0: int = 0,
                 merged: Sequence[tuple[int, int]] = ()) -> list[str]:
    """Trimmed header names; raises header.empty / header.duplicate naming the columns.
    `merged` holds the (first, last) sheet columns of merged ranges that cover the header row."""
    names = [_cell_text(c) for c in cells]
    filled = [n for n in names if n]
    spans = [(a, b) for a, b in merged if b > a]
    if spans:  # a merged header cell hides the names of the columns it spans
        first = min(spans)
        names += [""] * (first[1] - col0 + 1 - len(names))
        names[first[0] + 1 - col0] = ""
        in_merge = {c for a, b in spans for c in range(a, b + 1)}
    else:
        in_merge = set()
        while names and not names[-1]:
            names.pop()
    if not names:
        raise _empty()
    for i, name in enumerate(names):
        if name:
            continue
        col = column_letter(col0 + i)
        if len(filled) == 1 and len(names) > 1:
            zh_hint = f"；第{row}行只有“{filled[0]}”一个单元格有内容，像是表格标题，请删除标题行，让表头成为第一行"
            en_hint = (f"; row {row} has a single filled cell {filled[0]!r}, which looks like a title: delete the "
                       "title rows so that the header is the first row")
        elif col0 + i in in_merge:
            zh_hint = "；表头有合并单元格，请取消合并，让每一列都有自己的列名（表头只能占一行）"
            en_hint = "; the header has merged cells: unmerge them so that every column has its own name in one row"
        else:
            zh_hint = en_hint = ""
        raise IngestInputError("header.empty", f"第{row}行表头的 {col} 列（第{col0 + i + 1}列）没有列名{zh_hint}",
                               f"header row {row}: column {col} (#{col0 + i + 1}) has no name{en_hint}", row=row)
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            j = seen[name]
            a, b = column_letter(col0 + j), column_letter(col0 + i)
            raise IngestInputError(
                "header.duplicate",
                f"表头“{name}”重复出现在 {a} 列（第{col0 + j + 1}列）和 {b} 列（第{col0 + i + 1}列）",
                f"header {name!r} appears twice: column {a} (#{col0 + j + 1}) and column {b} (#{col0 + i + 1})",
                row=row)
        seen[name] = i
    return names


def _ragged(cells: list[Any], width: int) -> BadRow | list[Any]:
    """Extra trailing empty cells are dropped; any other length mismatch is a BadRow."""
    if len(cells) > width and all(c == "" or c is None for c in cells[width:]):
        return cells[:width]
    zh = f"本行有{len(cells)}个单元格，表头有{width}列"
    en = f"the row has {len(cells)} cells but the header has {width} columns"
    return BadRow(cells, [Problem("*", "row.ragged", zh, en)])


def _text_sample(path: Path, encoding: str | None) -> tuple[bytes, str, bool]:
    """First bytes, the encoding to read with, and whether it was detected (not given)."""
    with open(path, "rb") as f:
        sample = f.read(SAMPLE_SIZE)
    if encoding is not None:
        if encoding.startswith("utf-16") or encoding.startswith("utf-32"):
            return sample, encoding, False
        if looks_binary(sample):
            raise binary_error(sample)
        return sample, encoding, False
    enc, confident = detect_encoding(sample)
    if not confident:
        raise uncertain_error()
    return sample, enc, True


# --- CSV / TSV ------------------------------------------------------------------------------


def sniff_delimiter(line: str) -> str:
    """The candidate splitting the header line into the most cells (comma on a tie or none)."""
    best, best_n = ",", 1
    for cand in _DELIMITERS:
        if cand not in line:
            continue
        n = len(next(csv.reader([line], delimiter=cand), []))
        if n > best_n:
            best, best_n = cand, n
    return best


def _open_delimited(path: Path, kind: str, encoding: str | None, size: int) -> Source:
    sample, enc, detected = _text_sample(path, encoding)
    text_sample = codecs.getincrementaldecoder(enc)(errors="replace").decode(sample, final=False)
    if kind == "tsv":
        delimiter = "\t"
    else:
        first = next((ln for ln in text_sample.splitlines() if ln.strip()), "")
        delimiter = sniff_delimiter(first)
    if csv.field_size_limit() < MAX_FIELD_CHARS:
        csv.field_size_limit(MAX_FIELD_CHARS)
    raw = open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - closed by the row iterator or Source.close
    text = io.TextIOWrapper(raw, encoding=enc, newline="")
    text._CHUNK_SIZE = _TEXT_CHUNK  # type: ignore[attr-defined]
    reader = csv.reader(bounded_lines(text), delimiter=delimiter)
    n = 0
    try:
        header_cells: list[str] | None = None
        for rec in reader:
            n += 1
            if any(c.strip() for c in rec):
                header_cells = rec
                break
        if header_cells is None:
            raise _empty()
        header = check_header(header_cells, n)
    except UnicodeDecodeError:
        text.close()
        raise decode_error(enc, locate_decode_error(path, enc, delimiter), detected=detected) from None
    except csv.Error as exc:
        text.close()
        raise _csv_error(exc, n + 1) from None
    except BaseException:
        text.close()
        raise
    rows = _csv_rows(reader, text, len(header), n, path, enc, delimiter, detected)
    return Source(header=header, rows=rows, format=kind, encoding=enc, size=size,
                  info={"close": text.close, "delimiter": delimiter, "header_row": n,
                        "tell": raw.tell})  # bytes read so far (read-ahead included): progress


def bounded_lines(text: io.TextIOWrapper) -> Iterator[str]:
    """The lines of `text`, none longer than MAX_LINE_CHARS (iterated in C, no Python frame a line)."""
    return iter(partial(text.readline, MAX_LINE_CHARS), "")


def _csv_error(exc: csv.Error, row: int) -> IngestInputError:
    reason = str(exc)
    if "field larger than field limit" in reason:
        return IngestInputError(
            "csv.malformed", f"第{row}行起有一个引号没有闭合（或单元格超过 {MAX_FIELD_CHARS // 1048576} MB）",
            f"from row {row} on a quote is never closed (or a cell exceeds {MAX_FIELD_CHARS // 1048576} MB)", row=row)
    return IngestInputError("csv.malformed", f"第{row}行不是有效的 CSV：{reason}",
                            f"row {row} is not valid CSV: {reason}", row=row)


def _csv_rows(reader: Any, text: io.TextIOWrapper, width: int, n: int, path: Path, enc: str,
              delimiter: str, detected: bool) -> Iterator[tuple[int, list[Any]]]:
    try:
        for rec in reader:
            n += 1
            if len(rec) != width:
                if not rec or not any(rec):
                    continue
                yield n, _ragged(rec, width)
                continue
            if not rec[0] and not any(rec):
                continue
            yield n, rec
    except UnicodeDecodeError:
        raise decode_error(enc, locate_decode_error(path, enc, delimiter), detected=detected) from None
    except csv.Error as exc:
        raise _csv_error(exc, n + 1) from None
    finally:
        text.close()


def locate_decode_error(path: Path, encoding: str, delimiter: str | None = None) -> int:
    """The row where the bytes stop decoding: a second pass, on the error path only. Rows are CSV
    records when `delimiter` is given (a quoted cell may span lines), else lines."""
    decoder = codecs.getincrementaldecoder(encoding)()
    count = 0

    def lines() -> Iterator[str]:
        with open(path, "rb", buffering=_READ_BUFFER) as f:
            for line in f:
                yield decoder.decode(line)

    try:
        for _ in (csv.reader(lines(), delimiter=delimiter) if delimiter else lines()):
            count += 1
    except (UnicodeDecodeError, csv.Error):
        pass
    return count + 1


# --- workbooks ------------------------------------------------------------------------------


def _corrupt(kind: str, detail: str, head: bytes = b"") -> IngestInputError:
    zh_hint = en_hint = ""
    if head and not looks_binary(head[:4096]):
        zh_hint, en_hint = "（它看起来是文本文件，如 CSV 或 HTML，只是扩展名是 Excel 的）", \
            " (it looks like a text file, e.g. CSV or HTML, with an Excel suffix)"
    return IngestInputError("file.corrupt", f"无法读取 .{kind} 工作簿：文件已损坏、被截断或不是 Excel 文件{zh_hint}",
                            f"cannot read the .{kind} workbook: the file is damaged, truncated or not an Excel "
                            f"file{en_hint} ({detail})")


def _open_workbook(path: Path, kind: str, sheet: str | None, size: int) -> Source:
    from python_calamine import CalamineError, CalamineWorkbook, PasswordError

    if size > MAX_WORKBOOK_BYTES:
        mb = MAX_WORKBOOK_BYTES // (1024 * 1024)
        raise IngestInputError(
            "file.too_large", f"Excel 工作簿超过 {mb} MB，无法按流读取；请另存为 CSV（UTF-8）后上传",
            f"the workbook is larger than {mb} MB and workbooks cannot be streamed; save it as CSV (UTF-8) "
            "and upload that")
    with open(path, "rb") as f:
        head = f.read(8192)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(_OLE)):
        raise _corrupt(kind, "no Excel signature", head)
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        raise _corrupt(kind, "truncated ZIP container")
    handle: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by the row iterator or Source.close
    try:
        wb = CalamineWorkbook.from_filelike(handle)
    except PasswordError:
        handle.close()
        raise IngestInputError("file.encrypted", "工作簿有密码保护，请去掉密码后再上传",
                               "the workbook is password-protected; remove the password and upload again") from None
    except (CalamineError, OSError, ValueError) as exc:
        handle.close()
        raise _corrupt(kind, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__) from None

    def close() -> None:
        with contextlib.suppress(CalamineError):
            wb.close()
        handle.close()

    try:
        name = _pick_sheet(wb, sheet)
        try:
            ws = wb.get_sheet_by_name(name)
        except CalamineError as exc:
            raise _corrupt(kind, str(exc).splitlines()[0][:120]) from None
        merged_ranges = ws.merged_cell_ranges or []
        col0 = ws.start[1] if ws.start else 0
        it = iter(ws.iter_rows())
        n = 0
        header_cells: list[Any] | None = None
        for cells in it:
            n += 1
            if cells.count("") != len(cells):
                header_cells = cells
                break
        if header_cells is None:
            raise _empty(name)

        spans = [(a[1], b[1]) for a, b in merged_ranges if a[0] <= n - 1 <= b[0]]
        header = check_header(header_cells, n, col0=col0, merged=spans)
    except BaseException:
        close()
        raise
    return Source(header=header, rows=_sheet_rows(it, len(header), n, close), format=kind, sheet=name, size=size,
                  info={"close": close, "header_row": n, "sheets": list(wb.sheet_names)})


def _pick_sheet(wb: Any, sheet: str | None) -> str:
    names: list[str] = list(wb.sheet_names)
    if sheet is not None:
        if sheet in names:
            return sheet
        stripped = sheet.strip()
        if stripped in names:
            return stripped
        listed = "、".join(names)
        raise IngestInputError("sheet.unknown", f"工作簿中没有名为“{sheet}”的工作表；现有：{listed}",
                               f"the workbook has no sheet named {sheet!r}; sheets: {', '.join(names)}")
    from python_calamine import SheetTypeEnum, SheetVisibleEnum

    for meta in wb.sheets_metadata:
        if meta.visible == SheetVisibleEnum.Visible and meta.typ == SheetTypeEnum.WorkSheet:
            return str(meta.name)
    if not names:
        raise _empty()
    return names[0]


def _sheet_rows(it: Iterator[list[Any]], width: int, n: int, close: Callable[[], None]
                ) -> Iterator[tuple[int, list[Any]]]:
    try:
        for cells in it:
            n += 1
            if cells.count("") == len(cells):
                continue
            if len(cells) != width:
                yield n, _ragged(cells, width)
                continue
            yield n, cells
    finally:
        close()


# --- JSON Lines -----------------------------------------------------------------------------


def _json_header(obj: dict[str, Any], row: int) -> tuple[list[str], list[str]]:
    keys = list(obj)
    if not keys:
        raise IngestInputError("header.empty", f"第{row}个对象没有任何键，无法确定列",
                               f"object {row} has no keys to take the columns from", row=row)
    return keys, check_header([*keys, "x"], row)[:-1]  # a sentinel keeps empty keys from being trimmed


def _json_problem(rule: str, zh: str, en: str) -> list[Problem]:
    return [Problem("*", rule, zh, en)]


def _open_jsonl(path: Path, encoding: str | None, size: int) -> Source:
    _, enc, detected = _text_sample(path, encoding)
    raw = open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - closed by the row iterator or Source.close
    lines: Iterator[str] = bounded_lines(io.TextIOWrapper(raw, encoding=enc, newline=None))
    n = 0
    try:
        first: Any = None
        for line in lines:
            n += 1
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError as exc:
                    raise IngestInputError("json.malformed", f"第{n}行不是有效的 JSON：{_first_line(exc)}",
                                           f"line {n} is not valid JSON: {_first_line(exc)}", row=n) from None
                break
        if first is None:
            raise _empty()
        if not isinstance(first, dict):
            raise IngestInputError("json.not_object", f"第{n}行应为 JSON 对象（每行一个 {{...}}）",
                                   f"line {n} must be a JSON object (one {{...}} per line)", row=n)
        keys, header = _json_header(first, n)
    except UnicodeDecodeError:
        raw.close()
        raise decode_error(enc, locate_decode_error(path, enc), detected=detected) from None
    except BaseException:
        raw.close()
        raise
    rows = _jsonl_rows(lines, first, keys, n, path, enc, detected, raw.close)
    return Source(header=header, rows=rows, format="jsonl", encoding=enc, size=size,
                  info={"close": raw.close, "tell": raw.tell})


def _first_line(exc: Exception) -> str:
    text = exc.args[0] if exc.args else str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text).splitlines()[0][:120] if str(text) else type(exc).__name__


_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "true/false", type(None): "null"}


def _object_row(obj: Any, keys: list[str], keyset: set[str]) -> list[Any]:
    if not isinstance(obj, dict):
        kind = _JSON_KINDS.get(type(obj), type(obj).__name__)
        return BadRow([obj], _json_problem("row.json", f"该行是 JSON {kind}，应为对象 {{...}}",
                                           f"the row is a JSON {kind}, not an object {{...}}"))
    values = [obj.get(k) for k in keys]
    if obj.keys() <= keyset:
        return values
    extra = [k for k in obj if k not in keyset]
    shown = ", ".join(extra[:5])
    return BadRow(values, _json_problem("row.extra_keys", f"该行有首行没有的键：{shown}",
                                        f"the row has keys the first row does not: {shown}"), aligned=True)


def _jsonl_rows(lines: Iterator[str], first: dict[str, Any], keys: list[str], n: int, path: Path, enc: str,
                detected: bool, close: Callable[[], None]) -> Iterator[tuple[int, list[Any]]]:
    keyset = set(keys)
    loads = json.loads
    try:
        yield n, [first.get(k) for k in keys]
        for line in lines:
            n += 1
            try:
                obj = loads(line)
            except ValueError as exc:
                if len(line) >= MAX_LINE_CHARS and not line.endswith("\n"):  # no record is that long
                    raise IngestInputError(
                        "json.malformed", f"第{n}行超过 {MAX_LINE_CHARS >> 20}M 个字符仍未换行：不是 JSON Lines 文件？",
                        f"line {n} runs past {MAX_LINE_CHARS >> 20}M characters without a line break: "
                        "not a JSON Lines file?", row=n) from None
                if not line.strip():
                    continue
                yield n, BadRow([line[:200]], _json_problem("row.json", f"该行不是有效的 JSON：{_first_line(exc)}",
                                                             f"the line is not valid JSON: {_first_line(exc)}"))
                continue
            yield n, _object_row(obj, keys, keyset)
    except UnicodeDecodeError:
        raise decode_error(enc, locate_decode_error(path, enc), detected=detected) from None
    finally:
        close()


# --- JSON arrays ----------------------------------------------------------------------------


class _Utf8Reader:
    """Re-encodes a text stream to UTF-8 bytes for ijson (which reads bytes)."""

    def __init__(self, text: io.TextIOWrapper) -> None:
        self._text = text

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes the stream type with read(0)
            return b""
        return self._text.read(size if size > 0 else -1).encode("utf-8")


def _open_json(path: Path, encoding: str | None, size: int) -> Source:
    import ijson

    sample, enc, detected = _text_sample(path, encoding)
    raw = open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - closed by the row iterator or Source.close
    stream: Any
    if enc in ("utf-8", "utf-8-sig"):
        if sample.startswith(codecs.BOM_UTF8):
            raw.seek(len(codecs.BOM_UTF8))
        stream = raw
        head = sample.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
    else:
        stream = _Utf8Reader(io.TextIOWrapper(raw, encoding=enc))
        text = codecs.getincrementaldecoder(enc)(errors="replace").decode(sample)
        head = text.lstrip("\ufeff \t\r\n").encode()[:1]
    if head != b"[":
        raw.close()
        if not head:
            raise _empty()
        raise IngestInputError(
            "json.not_array", "JSON 文件应为对象数组 [{...}, {...}]；每行一个对象的文件请用 .jsonl 扩展名",
            "a JSON file must be an array of objects [{...}, {...}]; for one object per line use the .jsonl suffix")
    items = ijson.items(stream, "item", use_float=True)
    try:
        first = next(items, None)
    except ijson.JSONError as exc:
        raw.close()
        raise IngestInputError("json.malformed", f"JSON 格式错误（第1个对象）：{_first_line(exc)}",
                               f"malformed JSON (object 1): {_first_line(exc)}", row=1) from None
    except UnicodeDecodeError:
        raw.close()
        raise decode_error(enc, 1, detected=detected) from None
    if first is None:
        raw.close()
        raise IngestInputError("file.empty", "JSON 数组里没有对象", "the JSON array has no objects")
    if not isinstance(first, dict):
        raw.close()
        raise IngestInputError("json.not_object", "JSON 数组的第1项应为对象 {...}",
                               "item 1 of the JSON array must be an object {...}", row=1)
    try:
        keys, header = _json_header(first, 1)
    except BaseException:
        raw.close()
        raise
    return Source(header=header, rows=_json_rows(items, first, keys, enc, detected, raw.close), format="json",
                  encoding=enc, size=size, info={"close": raw.close})


def _json_rows(items: Iterator[Any], first: dict[str, Any], keys: list[str], enc: str, detected: bool,
               close: Callable[[], None]) -> Iterator[tuple[int, list[Any]]]:
    import ijson

    keyset = set(keys)
    n = 1
    try:
        yield n, [first.get(k) for k in keys]
        for obj in items:
            n += 1
            yield n, _object_row(obj, keys, keyset)
    except ijson.JSONError as exc:
        raise IngestInputError(
            "json.malformed", f"JSON 在第{n}个对象之后出错（文件被截断或有多余内容）：{_first_line(exc)}",
            f"the JSON breaks off after object {n} (truncated or trailing garbage): {_first_line(exc)}",
            row=n + 1) from None
    except UnicodeDecodeError:
        raise decode_error(enc, n + 1, detected=detected) from None
    finally:
        close()

