"""The verify mode (比对验证): does a record with this key exist, and do the claimed values
match it? The answer is a yes/no per record and per claimed field — never a stored value.

Body: `{"records": [{"citizen_id": "11010519900101002x", "name": "张三明"}, …]}` with up to
1,000 records. Each record carries every key field (to find the record) and any other granted
field as a claim. A key is read the way ingest read the stored value (trimmed; national
identifiers in their canonical form, so a lower-case x or a 15-digit citizen ID finds the
record); a claim matches when its normal form equals the stored value's (values.normalizer).
Absent, deleted and outside the grant's row filter are all `exists: false`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from onceonly.catalog.models import Field, Resource
from onceonly.exchange.calls import Answer, dumps
from onceonly.exchange.data_errors import BatchTooLarge, RequestInvalid
from onceonly.exchange.data_schemas import MAX_BATCH
from onceonly.exchange.enforcement import Permit
from onceonly.exchange.projection import require_granted, require_key_granted
from onceonly.exchange.schemas import FIELD_NAME_RE
from onceonly.exchange.values import normalizer
from onceonly.ingest.coerce import coercer
from onceonly.kit.identifiers import IdentifierError, normalize_citizen_id, normalize_mobile
from onceonly.store import reading

Record = dict[str, Any]
_KEY_RULES: dict[str, Callable[[str], str]] = {"citizen_id": normalize_citizen_id, "uscc": str.upper,
                                               "mobile": normalize_mobile}


def parse_body(body: bytes) -> list[Record]:
    """The records of a verify body: structure only (400 naming the place, 413 over 1,000)."""
    shape = 'send JSON {"records": [{"<key field>": …, "<claimed field>": …}, …]}'
    if not body.strip():
        raise RequestInvalid(f"body: empty; {shape}", field="body")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise RequestInvalid("body: not UTF-8 text", field="body") from None
    except json.JSONDecodeError as exc:
        raise RequestInvalid(f"body: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                             field="body") from None
    except RecursionError:
        raise RequestInvalid("body: nested too deeply", field="body") from None
    if not isinstance(data, dict) or set(data) != {"records"} or not isinstance(data["records"], list):
        raise RequestInvalid(f"body: {shape}", field="records")
    records = data["records"]
    if not records:
        raise RequestInvalid("records: give at least one record", field="records")
    if len(records) > MAX_BATCH:
        raise BatchTooLarge(f"records: at most {MAX_BATCH:,} records per call, not {len(records):,}; split the batch",
                            field="records")
    for i, record in enumerate(records):
        where = f"records[{i}]"
        if not isinstance(record, dict) or not record:
            raise RequestInvalid(f"{where}: an object of field names and values", field=where)
        for name, value in record.items():
            if not FIELD_NAME_RE.match(name):
                raise RequestInvalid(f"{where}: {name[:64]!r} is not a field name", field=where)
            if isinstance(value, dict | list):
                raise RequestInvalid(f"{where}.{name}: a single value, not an object or array", field=f"{where}.{name}")
    return records


def fields_named(records: list[Record]) -> list[str]:
    return sorted({name for record in records for name in record})


def _lookup_value(field: Field, claim: Any) -> Any:
    """The key value as ingest would have stored it; None when it cannot be one."""
    try:
        value = coercer(field.type)(claim)
    except ValueError:
        return None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # naive means UTC, as the store keeps it
    if isinstance(value, str):
        if "\x00" in value or any("\ud800" <= c <= "\udfff" for c in value):
            return None
        if field.length and len(value) > field.length:
            return None
        rule = _KEY_RULES.get(field.check or "")
        if rule is not None:
            try:
                value = rule(value)
            except IdentifierError:
                value = value.upper() if field.check == "citizen_id" else value
    return value


def _matches(norm: Callable[[Any], Any], claim: Any, stored: Any) -> bool:
    if claim is None or stored is None:
        return claim is None and stored is None
    try:
        return bool(norm(claim) == norm(stored))
    except (ValueError, TypeError, OverflowError):
        return False


def run(session: Session, permit: Permit, res: Resource, records: list[Record]) -> Answer:
    for name in fields_named(records):
        require_granted(permit, res, name)
    require_key_granted(permit, res)
    fields = {f.name: f for f in res.fields}
    keys = list(res.key_fields)
    wanted: list[tuple[Any, ...] | None] = []
    for i, record in enumerate(records):
        missing = [k for k in keys if k not in record]
        if missing:
            raise RequestInvalid(f"records[{i}].{missing[0]}: every record needs the key field(s) {', '.join(keys)}",
                                 field=f"records[{i}].{missing[0]}")
        key = tuple(_lookup_value(fields[k], record[k]) for k in keys)
        wanted.append(None if any(v is None for v in key) else key)
    claimed = sorted({n for r in records for n in r if n not in keys})
    rows = reading.rows_by_keys(session, res, [k for k in wanted if k is not None], claimed, permit.row_filter)
    norms = {name: normalizer(fields[name]) for name in claimed}
    results = []
    for record, wanted_key in zip(records, wanted, strict=True):
        row = rows.get(wanted_key) if wanted_key is not None else None
        checks = {name: row is not None and _matches(norms[name], value, row[name])
                  for name, value in record.items() if name not in keys}
        results.append({"exists": row is not None, "match": row is not None and all(checks.values()),
                        "fields": checks})
    body = {"service": permit.service_code, "count": len(results), "results": results}
    return Answer(dumps(body), len(results), detail={"fields": claimed, "records": len(results)})
