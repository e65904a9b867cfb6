"""What a data-plane call may see of a resource: the granted fields narrowed to the caller's
`fields=` projection, and the checks on fields used to filter, sort or look up by."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from sqlalchemy.orm import Session

from onceonly.catalog.models import Field, Resource
from onceonly.exchange import snapshot
from onceonly.exchange.data_errors import RequestInvalid
from onceonly.exchange.enforcement import Permit, apply_masking
from onceonly.exchange.errors import FieldNotGranted, ServiceUnavailable
from onceonly.exchange.schemas import FIELD_NAME_RE
from onceonly.store.reading import wire_value

Params = Sequence[tuple[str, str]]


def single(params: Params, name: str) -> str | None:
    """A parameter that may be given once."""
    values = [v for k, v in params if k == name]
    if len(values) > 1:
        raise RequestInvalid(f"{name}: given {len(values)} times; give it once", field=name)
    return values[0] if values else None


def parse_fields(raw: str | None) -> list[str] | None:
    """`fields=a,b`: the projection (None: every granted field)."""
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",")]
    if not raw.strip() or any(not FIELD_NAME_RE.match(n) for n in names):
        raise RequestInvalid("fields: a comma-separated list of field names (lower-case letters, digits and _)",
                             field="fields")
    return list(dict.fromkeys(names))


def require_granted(permit: Permit, res: Resource, name: str) -> None:
    """A field the call names: 400 if the resource has no such field (its fields are catalog
    metadata, no secret), 403 if it is not granted."""
    if all(f.name != name for f in res.fields):
        raise RequestInvalid(f"{name}: service {permit.service_code} has no field of this name", field=name)
    if name not in permit.fields:
        raise FieldNotGranted(f"field {name} is not granted for service {permit.service_code}", field=name)


def narrow(permit: Permit, res: Resource, requested: Sequence[str] | None) -> Permit:
    """The permit reduced to the requested fields (resource order)."""
    if requested is None:
        return permit
    for name in requested:
        require_granted(permit, res, name)
    fields = tuple(f for f in permit.fields if f in requested)
    return replace(permit, fields=fields,
                   masking=MappingProxyType({f: r for f, r in permit.masking.items() if f in fields}))


def resource_of(session: Session, permit: Permit) -> Resource:
    res = snapshot.resource(session, permit.resource_id)
    if res is None or not res.table_name:
        raise ServiceUnavailable(f"service {permit.service_code} has no published resource behind it")
    return res


def field_of(res: Resource, name: str) -> Field:
    return next(f for f in res.fields if f.name == name)


def require_usable(permit: Permit, res: Resource, name: str, use: str, *, indexed: bool = True,
                   ranged: bool = False) -> Field:
    """A field the call filters, sorts or looks up by: granted, indexed (a key or query field),
    and — for ranges and sorting, which would reveal a masked value bit by bit — not masked."""
    require_granted(permit, res, name)
    if indexed and name not in res.key_fields and name not in res.query_fields:
        usable = [f for f in permit.fields if f in res.key_fields or f in res.query_fields]
        raise RequestInvalid(f"{name}: cannot {use} by this field; only indexed fields (key and query fields) can: "
                             f"{', '.join(usable) or 'none granted'}", field=name)
    if ranged and name in permit.masking:
        raise FieldNotGranted(f"field {name} is granted masked: it can be matched with eq or in, not {use}",
                              field=name)
    return field_of(res, name)


def require_key_granted(permit: Permit, res: Resource) -> None:
    for name in res.key_fields:
        require_usable(permit, res, name, "look up", indexed=False)


def show(permit: Permit, row: dict[str, Any]) -> dict[str, Any]:
    """A typed row as the caller may see it: granted fields only, wire form, masked."""
    return apply_masking(permit, {f: wire_value(row[f]) for f in permit.fields if f in row})


def key_shown(permit: Permit, res: Resource, key: Iterable[Any]) -> str | None:
    """A key as the caller may see it (masked like its fields); None unless every key field is
    granted."""
    values = list(key)
    if any(k not in permit.fields for k in res.key_fields):
        return None
    masked = show(permit, dict(zip(res.key_fields, values, strict=True)))
    parts = [masked[k] for k in res.key_fields]
    if len(parts) == 1:
        return str(parts[0])
    return json.dumps([str(p) for p in parts], ensure_ascii=False)
