"""The api mode (接口访问): one record by its key.

A one-field key is its value as it is (percent-encoded in the path); a composite key is a JSON
array of its values in key order, e.g. `["341802","2026-01"]` — the form the change feed's
`key` has. Absent, deleted and outside the grant's row filter all answer the same 404."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.exchange.calls import Answer, dumps
from onceonly.exchange.data_errors import RecordNotFound, RequestInvalid
from onceonly.exchange.enforcement import Permit
from onceonly.exchange.projection import field_of, narrow, require_key_granted, show
from onceonly.exchange.values import from_text
from onceonly.store import reading

PROBLEM = "application/problem+json"


def parse_key(res: Resource, text: str) -> tuple[Any, ...]:
    """The typed key of a path key (400 naming `key` when it cannot be one)."""
    keys = list(res.key_fields)
    if len(keys) == 1:
        return (from_text(field_of(res, keys[0]), text, "key"),)
    bad = RequestInvalid(f"key: a composite key is a JSON array of its {len(keys)} values in key order "
                         f"({', '.join(keys)})", field="key")
    try:
        parts = json.loads(text)
    except ValueError:
        raise bad from None
    if not isinstance(parts, list) or len(parts) != len(keys):
        raise bad
    texts = []
    for part in parts:
        if isinstance(part, bool):
            texts.append("true" if part else "false")
        elif isinstance(part, str | int | float):
            texts.append(str(part))
        else:
            raise bad
    return tuple(from_text(field_of(res, k), t, "key") for k, t in zip(keys, texts, strict=True))


def run(session: Session, permit: Permit, res: Resource, key_text: str, fields: list[str] | None) -> Answer:
    require_key_granted(permit, res)
    shown = narrow(permit, res, fields)
    key = parse_key(res, key_text)
    row = reading.get_row(session, res, key, shown.fields, permit.row_filter)
    detail = {"fields": list(shown.fields)}
    if row is None:
        problem = RecordNotFound(f"service {permit.service_code} has no record with this key", field="key").problem()
        return Answer(dumps(problem), 0, status=404, media_type=PROBLEM, detail=detail)
    body = {"service": permit.service_code, "key": key_text, "record": show(shown, row)}
    return Answer(dumps(body), 1, detail=detail)
