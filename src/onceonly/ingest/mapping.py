"""Header → field mapping.

Each source column is matched to a catalog field in this order; a column matched by a step is
not looked at again by later ones:

1. the explicit mapping (``{"source header": "field_name"}``; ``null`` skips the column on purpose),
   keyed by the exact header, else by its normalized form;
2. exact match on the field's name, Chinese title or field code (an optional ``code`` attribute);
3. normalized match: NFKC (full-width → half-width), all whitespace including U+3000 and
   zero-width characters removed, ``_`` and ``-`` removed, case folded, and required-field
   markers around the header dropped (``*姓名``, ``姓名*``, ``★姓名``, ``【姓名】``, ``姓名（必填）``).

Two columns for one field is `mapping.ambiguous` (whatever steps matched them: keep one, map the
other to ``null``), as is a header that matches the titles of two different fields. An explicit
entry naming a field that does not exist is `mapping.unknown_field`. Columns left over are listed
in `ColumnMap.unmapped` for the report; required fields without a column are listed in
`ColumnMap.missing_required`, and the pipeline fails the batch on them before any row is written.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from onceonly.ingest.types import ColumnMap, IngestInputError

_DROP = str.maketrans("", "", " \t\r\n\x0b\x0c\u3000\u00a0\u200b\u200c\u200d\u2060\ufeff_-")
_MARKS = "*★☆※#"
_SUFFIXES = ("(必填)", "(必填项)", "(选填)", "(可选)", "(required)", "(optional)")
_BRACKETS = {"(": ")", "[": "]", "【": "】", "〔": "〕", "<": ">", "《": "》", "{": "}"}


def normalize_header(text: str) -> str:
    """The comparison form of a header or field label (see the module docstring)."""
    t = unicodedata.normalize("NFKC", text).translate(_DROP).casefold()
    changed = True
    while changed and t:
        changed = False
        for suffix in _SUFFIXES:
            if t.endswith(suffix) and len(t) > len(suffix):
                t, changed = t[: -len(suffix)], True
        stripped = t.strip(_MARKS)
        if stripped != t and stripped:
            t, changed = stripped, True
        if len(t) > 2 and _BRACKETS.get(t[0]) == t[-1]:
            t, changed = t[1:-1], True
    return t


def _labels(f: Any) -> tuple[str | None, str | None, str | None]:
    """name, title, code (an optional attribute): in the order they win over each other."""
    code = getattr(f, "code", None)
    return f.name, f.title or None, code if isinstance(code, str) and code else None


def _index(fields: Sequence[Any], key: Any) -> tuple[dict[str, str], dict[str, list[str]]]:
    """label → field name, and the labels that name more than one field (ambiguous)."""
    found: dict[str, set[str]] = {}
    for rank in range(3):  # names win over titles, titles over codes
        seen_here: dict[str, set[str]] = {}
        for f in fields:
            label = _labels(f)[rank]
            if label:
                seen_here.setdefault(key(label), set()).add(f.name)
        for label, names in seen_here.items():
            found.setdefault(label, names)
    index = {label: next(iter(names)) for label, names in found.items() if len(names) == 1}
    clashes = {label: sorted(names) for label, names in found.items() if len(names) > 1}
    return index, clashes


def _col(i: int) -> tuple[str, str]:
    return f"第{i + 1}列", f"column {i + 1}"


def build_column_map(header: Sequence[str], fields: Sequence[Any],
                     explicit: dict[str, str | None] | None = None) -> ColumnMap:
    """Match every header cell to a field; see the module docstring for the order and rules."""
    names = {f.name for f in fields}
    explicit = explicit or {}
    explicit_norm = {normalize_header(k): v for k, v in explicit.items()}
    exact, exact_clash = _index(fields, lambda s: s)
    norm, norm_clash = _index(fields, normalize_header)

    columns: dict[int, str] = {}
    how: dict[int, str] = {}
    ignored: list[str] = []
    used_explicit: set[str] = set()
    owner: dict[str, int] = {}

    def claim(i: int, field: str, step: str) -> None:
        if field in owner:
            j = owner[field]
            (zj, ej), (zi, ei) = _col(j), _col(i)
            raise IngestInputError(
                "mapping.ambiguous",
                f"{zj}“{header[j]}”和{zi}“{header[i]}”都对应信息项 {field}；请在映射文件中把其中一列映射为 null",
                f"{ej} {header[j]!r} and {ei} {header[i]!r} both map to field {field}; map one of them to null "
                "in the mapping file")
        owner[field] = i
        columns[i] = field
        how[i] = step

    pending = list(range(len(header)))
    rest: list[int] = []
    for i in pending:
        h = header[i]
        key: str | None = h if h in explicit else None
        if key is None:
            nh = normalize_header(h)
            if nh in explicit_norm:
                key = next(k for k in explicit if normalize_header(k) == nh)
        if key is None:
            rest.append(i)
            continue
        used_explicit.add(key)
        target = explicit[key]
        if target is None or target == "":
            ignored.append(h)
            continue
        if target not in names:
            raise IngestInputError(
                "mapping.unknown_field",
                f"映射文件把“{key}”映射到不存在的信息项“{target}”；可用：{', '.join(sorted(names))}",
                f"the mapping maps {key!r} to {target!r}, which is not a field of this resource; fields: "
                f"{', '.join(sorted(names))}")
        claim(i, target, "explicit")

    for step, index, clashes, key_of in (("exact", exact, exact_clash, lambda s: s),
                                         ("normalized", norm, norm_clash, normalize_header)):
        left: list[int] = []
        for i in rest:
            k = key_of(header[i])
            if k in clashes:
                zi, ei = _col(i)
                raise IngestInputError(
                    "mapping.ambiguous",
                    f"{zi}“{header[i]}”同时对应多个信息项（{', '.join(clashes[k])}），请用映射文件指明",
                    f"{ei} {header[i]!r} matches several fields ({', '.join(clashes[k])}); name one in a mapping file")
            field = index.get(k)
            if field is None:
                left.append(i)
            else:
                claim(i, field, step)
        rest = left

    missing = [f.name for f in fields if f.required and f.name not in owner]
    return ColumnMap(columns=columns, unmapped=[header[i] for i in rest], missing_required=missing,
                     ignored=ignored, unused_mapping=[k for k in explicit if k not in used_explicit], how=how)


def missing_required_error(missing: Sequence[str], fields: Sequence[Any]) -> IngestInputError:
    """The batch-level error for required fields without a column (the pipeline raises it)."""
    titles = {f.name: f.title for f in fields}
    zh = "、".join(f"{titles.get(n, n)}（{n}）" for n in missing)
    return IngestInputError("mapping.missing_required", f"文件缺少必填信息项的列：{zh}",
                            f"the file has no column for required field(s): {', '.join(missing)}")


def load_mapping_file(path: Path) -> dict[str, str | None]:
    """A JSON object {"source header": "field_name" | null}; anything else is `mapping.file`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise IngestInputError("mapping.file", f"找不到映射文件 {path}", f"mapping file {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0][:120]
        raise IngestInputError("mapping.file", f"映射文件不是有效的 UTF-8 JSON：{first}",
                               f"the mapping file is not valid UTF-8 JSON: {first}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) or v is None for v in data.values()):
        raise IngestInputError(
            "mapping.file", '映射文件应为 JSON 对象 {"源列名": "信息项名" 或 null}',
            'the mapping file must be a JSON object {"source header": "field_name" or null}')
    return {str(k): v for k, v in data.items()}
