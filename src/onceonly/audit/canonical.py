"""The canonical form of an audit record and its SM3 hash — written down in docs/audit.md so
an auditor can recompute every hash with any SM3 implementation.

The form is a JSON object with exactly the keys of FIELDS, serialized as RFC 8785 (JCS) does:
keys sorted, no whitespace, UTF-8, strings escaped minimally. Values are restricted so that
JCS and Python's ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
agree byte for byte: every number is an integer of at most 2**53 and every text is valid
Unicode. Values are normalized *before* they are stored, so what is stored is what was hashed."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from onceonly.kit.crypto import sm3_hex

FIELDS = ("seq", "time", "kind", "system", "org", "username", "service", "mode", "action", "target",
          "purpose", "request_digest", "status", "records", "bytes", "latency_ms", "ip", "detail", "prev_hash")
MAX_SAFE_INT = 2**53 - 1
_MAX_DEPTH = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(value: Any) -> str:
    """The canonical JSON text of an already normalized value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def clean_text(value: str, limit: int | None = None) -> str:
    """Valid Unicode without NUL (PostgreSQL cannot store it), cut to `limit` characters."""
    if not value.isascii() and _SURROGATE.search(value):  # lone surrogates cannot be encoded as UTF-8
        value = _SURROGATE.sub("\ufffd", value)
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value[:limit] if limit is not None else value


def normalize_detail(value: Any, depth: int = 0) -> Any:
    """JSON with only objects, arrays, strings, booleans, null and safe integers. Anything else
    (floats, large integers, dates, Decimals, …) becomes its text, so every implementation
    serializes it the same way."""
    if depth > _MAX_DEPTH:
        return clean_text(repr(value), 1000)
    if type(value) is str:  # the commonest case: a detail is mostly names and short texts
        return value if value.isascii() and "\x00" not in value else clean_text(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else str(value)
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)): normalize_detail(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalize_detail(v, depth + 1) for v in value]
    if isinstance(value, datetime):
        return iso_time(value)
    return clean_text(str(value))


def iso_time(value: datetime) -> str:
    """UTC, microseconds always present: 2026-11-27T06:23:02.951297Z."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes hashed for a record given as a mapping with the FIELDS keys ("time" a datetime)."""
    doc = {name: record[name] for name in FIELDS}
    doc["time"] = iso_time(record["time"])
    return dumps(doc).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    return sm3_hex(canonical_bytes(record))


def signed_bytes(kind: str, **fields: Any) -> bytes:
    """What a checkpoint ("audit-checkpoint") or anchor ("audit-anchor") signature covers."""
    doc = {k: iso_time(v) if isinstance(v, datetime) else v for k, v in fields.items()}
    doc["type"] = kind
    return dumps(doc).encode("utf-8")


def request_digest(method: str, target: str, body: bytes = b"") -> str:
    """SM3 hex of a request: "METHOD target\\n" (path with its query string) followed by the body."""
    return sm3_hex(f"{method.upper()} {target}\n".encode() + body)
