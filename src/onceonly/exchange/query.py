"""The query mode (检索查询): filtered, projected, sorted keyset pages of a service's records.

Query string (documented in docs/exchange.md, "Query syntax"):

    field=VALUE            equality              name=张三明
    field=OP:VALUE         OP one of eq in gt ge lt le
                           region=in:341802,341881   birth_date=ge:1990-01-01
    filter.field=…         the same, for a field named like a control parameter
    fields=a,b             projection            sort=-household,name (at most 3; - is descending)
    limit=N                1–1000 (default 100)  cursor=…  (from `next_cursor`)

Repeating a field ANDs its conditions (`household=ge:1&household=lt:9`). In an `in:` list a
comma inside a value is written `\\,` and a backslash `\\\\`. Only indexed fields (key and query
fields) can be filtered or sorted on, and only granted ones; a masked field only with eq or in.
Values are typed like their field and always bound as parameters. Pages are keyset pages
(sort fields, then the key; NULLs last), so they stay stable while rows are added; the cursor
is sealed (SM4-GCM, bound to the system), because it carries the last row's key."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.exchange import signing
from onceonly.exchange.calls import Answer, dumps
from onceonly.exchange.data_errors import RequestInvalid
from onceonly.exchange.data_schemas import MAX_PAGE
from onceonly.exchange.enforcement import Permit
from onceonly.exchange.projection import Params, narrow, parse_fields, require_usable, show, single
from onceonly.exchange.schemas import FIELD_NAME_RE
from onceonly.exchange.values import from_json, from_text
from onceonly.kit.crypto import sm3_hex
from onceonly.store import reading
from onceonly.store.reading import Condition, SortKey

CONTROL = ("fields", "sort", "limit", "cursor")
FILTER_PREFIX = "filter."
DEFAULT_LIMIT = 100
MAX_CONDITIONS = 20
MAX_IN = 100
MAX_SORT = 3
MAX_CURSOR = 4096


@dataclass(frozen=True)
class RawFilter:
    field: str
    op: str
    texts: tuple[str, ...]
    param: str


@dataclass(frozen=True)
class QueryRequest:
    fields: list[str] | None
    filters: list[RawFilter]
    sort: list[SortKey]
    limit: int
    cursor: str | None


def _split_in(text: str) -> list[str]:
    """Values of an in: list; `\\,` is a comma inside a value, `\\\\` a backslash."""
    values, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(ch)
    if escaped:
        current.append("\\")
    values.append("".join(current))
    return values


def _filter(name: str, param: str, text: str) -> RawFilter:
    op, sep, rest = text.partition(":")
    if not sep or op not in reading.OPERATORS:
        return RawFilter(name, "eq", (text,), param)
    if op != "in":
        return RawFilter(name, op, (rest,), param)
    values = _split_in(rest)
    if len(values) > MAX_IN:
        raise RequestInvalid(f"{param}: an in: list holds at most {MAX_IN} values, not {len(values)}", field=param)
    return RawFilter(name, "in", tuple(values), param)


def parse_sort(raw: str | None) -> list[SortKey]:
    if raw is None:
        return []
    keys = []
    for part in raw.split(","):
        part = part.strip()
        name = part[1:] if part.startswith(("-", "+")) else part
        if not FIELD_NAME_RE.match(name):
            raise RequestInvalid("sort: a comma-separated list of field names, each optionally prefixed with - "
                                 "(descending)", field="sort")
        keys.append(SortKey(name, part.startswith("-")))
    if len(keys) > MAX_SORT or len({k.field for k in keys}) != len(keys):
        raise RequestInvalid(f"sort: at most {MAX_SORT} different fields", field="sort")
    return keys


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise RequestInvalid(f"limit: an integer from 1 to {MAX_PAGE}", field="limit")
    return int(raw)


def parse(params: Params) -> QueryRequest:
    """The query string's syntax (types are checked against the resource later)."""
    filters = []
    for key, value in params:
        if key in CONTROL:
            continue
        name = key[len(FILTER_PREFIX):] if key.startswith(FILTER_PREFIX) else key
        if not FIELD_NAME_RE.match(name):
            raise RequestInvalid(f"{key[:64]}: not a query parameter (filters are named after fields; the others "
                                 f"are {', '.join(CONTROL)})", field=key[:64])
        filters.append(_filter(name, key, value))
    if len(filters) > MAX_CONDITIONS:
        raise RequestInvalid(f"at most {MAX_CONDITIONS} filter conditions, not {len(filters)}", field="filters")
    cursor = single(params, "cursor")
    if cursor is not None and (len(cursor) > MAX_CURSOR or not cursor):
        raise RequestInvalid("cursor: not a cursor of this service (pass next_cursor as it was given)",
                             field="cursor")
    return QueryRequest(fields=parse_fields(single(params, "fields")), filters=filters,
                        sort=parse_sort(single(params, "sort")), limit=parse_limit(single(params, "limit")),
                        cursor=cursor)


def conditions(permit: Permit, res: Resource, filters: Sequence[RawFilter]) -> list[Condition]:
    out = []
    for f in filters:
        field = require_usable(permit, res, f.field, f"filter with {f.op}", ranged=f.op not in ("eq", "in"))
        out.append(Condition(f.field, f.op, tuple(from_text(field, t, f.param) for t in f.texts)))
    return out


# -- cursors -----------------------------------------------------------------------------------

def _fingerprint(permit: Permit, q: QueryRequest) -> str:
    shape = [permit.service_code, permit.resource_id, [(s.field, s.descending) for s in q.sort],
             sorted((f.field, f.op, list(f.texts)) for f in q.filters)]
    return sm3_hex(json.dumps(shape, ensure_ascii=False))[:24]


def _context(system_code: str) -> str:
    return f"{system_code}/cursor"  # '/' never occurs in a system code: no clash with sealed secrets


def seal_cursor(master: str, system_code: str, fingerprint: str, values: list[Any]) -> str:
    sealed = signing.seal(json.dumps({"q": fingerprint, "a": values}, ensure_ascii=False), master,
                          _context(system_code))
    raw = base64.b64decode(sealed.partition(":")[2])
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def open_cursor(master: str, system_code: str, fingerprint: str, cursor: str) -> list[Any]:
    bad = RequestInvalid("cursor: not a cursor of this query (pass next_cursor as it was given, with the same "
                         "filters and sort)", field="cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise bad from None
    text = signing.unseal(f"sm4gcm1:{base64.b64encode(raw).decode('ascii')}", master, _context(system_code))
    if text is None:
        raise bad
    data = json.loads(text)
    if data.get("q") != fingerprint or not isinstance(data.get("a"), list):
        raise bad
    return list(data["a"])


# -- the query ---------------------------------------------------------------------------------

def run(session: Session, permit: Permit, res: Resource, q: QueryRequest, *, master: str, system_code: str,
        path: str, params: Params) -> Answer:
    """One page: the grant's row filter and the caller's conditions, the projection, masking."""
    conds = conditions(permit, res, q.filters)
    for s in q.sort:
        require_usable(permit, res, s.field, "sort", ranged=True)
    shown = narrow(permit, res, q.fields)
    fingerprint = _fingerprint(permit, q)
    terms = [s.field for s in q.sort] + list(res.key_fields)
    by_name = {f.name: f for f in res.fields}
    after = None
    if q.cursor is not None:
        values = open_cursor(master, system_code, fingerprint, q.cursor)
        if len(values) != len(terms):
            raise RequestInvalid("cursor: not a cursor of this query", field="cursor")
        after = [from_json(by_name[t], v, "cursor") for t, v in zip(terms, values, strict=True)]
    limit = max(1, min(q.limit, permit.remaining_today))
    rows = reading.page(session, res, fields=shown.fields, conditions=conds, row_filter=permit.row_filter,
                        sort=q.sort, after=after, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = next_link = None
    if more:
        last = rows[-1]
        next_cursor = seal_cursor(master, system_code, fingerprint,
                                  [reading.wire_value(last[t]) for t in terms])
        kept = [(k, v) for k, v in params if k != "cursor"]
        next_link = f"{path}?{urlencode([*kept, ('cursor', next_cursor)])}"
    records = [show(shown, r) for r in rows]
    body = {"service": permit.service_code, "fields": list(shown.fields), "count": len(records),
            "records": records, "next_cursor": next_cursor, "next": next_link}
    return Answer(dumps(body), len(records),
                  detail={"fields": list(shown.fields), "filters": [f"{c.field}:{c.op}" for c in conds]})
