"""Values on the data plane: filter values and keys from the query string or a cursor, typed
like their field (strictly; a bad one is a 400 naming the parameter and the rule), and the
normal form verify compares claimed and stored values in."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from onceonly.catalog.models import Field
from onceonly.exchange.data_errors import RequestInvalid
from onceonly.ingest import coerce
from onceonly.kit.identifiers import IdentifierError, normalize_citizen_id, normalize_mobile

MAX_TEXT = 4000  # longest filter value on a text field without a declared length
_INTEGER = re.compile(r"^[+-]?\d{1,19}$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?$")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def shown(text: str, limit: int = 40) -> str:
    """A value quoted in an error message: cut, control characters escaped."""
    cut = text[:limit] + ("…" if len(text) > limit else "")
    return repr(cut.encode("utf-8", "backslashreplace").decode("utf-8"))


def check_text(text: str, what: str) -> str:
    """Text that can be bound as a parameter on every backend: no NUL, no lone surrogate."""
    if "\x00" in text:
        raise RequestInvalid(f"{what}: must not contain NUL characters", field=what)
    if any("\ud800" <= c <= "\udfff" for c in text):
        raise RequestInvalid(f"{what}: is not valid Unicode (a lone surrogate)", field=what)
    return text


def from_text(field: Field, text: str, what: str) -> Any:
    """A value given as text (query string, key), typed like `field`."""
    def bad(rule: str) -> RequestInvalid:
        return RequestInvalid(f"{what}: {shown(text)} is not {rule} (field {field.name} is {field.type})",
                              field=what)

    match field.type:
        case "string":
            check_text(text, what)
            limit = field.length or MAX_TEXT
            if len(text) > limit:
                raise RequestInvalid(f"{what}: the value is {len(text)} characters long; field {field.name} holds at "
                                     f"most {limit}", field=what)
            return text
        case "integer":
            if not _INTEGER.match(text) or not -(2**63) <= int(text) < 2**63:
                raise bad("an integer between -2^63 and 2^63-1")
            return int(text)
        case "number":
            if not _NUMBER.match(text) or not math.isfinite(float(text)):
                raise bad("a finite decimal number")
            return float(text)
        case "boolean":
            if text.lower() not in _BOOLEANS:
                raise bad("a boolean (true, false, 1 or 0)")
            return _BOOLEANS[text.lower()]
        case "date":
            try:
                if len(text) != 10:
                    raise ValueError
                return date.fromisoformat(text)
            except ValueError:
                raise bad("a date YYYY-MM-DD") from None
        case "datetime":
            try:
                if not 10 <= len(text) <= 40:
                    raise ValueError
                moment = datetime.fromisoformat(text)
            except ValueError:
                raise bad("an ISO 8601 date and time, e.g. 2026-01-02T08:00:00+08:00") from None
            return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    raise bad("a value of a known type")


def from_json(field: Field, value: Any, what: str) -> Any:
    """A value as the data plane wrote it into JSON (a cursor), typed like `field`."""
    if value is None:
        return None
    if field.type == "integer" and value.__class__ is int:
        return value
    if field.type == "number" and value.__class__ in (int, float):
        return float(value)
    if field.type == "boolean" and value.__class__ is bool:
        return value
    if isinstance(value, str) and field.type in ("string", "date", "datetime"):
        return from_text(field, value, what)
    raise RequestInvalid(f"{what}: a value does not fit field {field.name}", field=what)


# -- verify ------------------------------------------------------------------------------------

def _text_norm(value: Any) -> str:
    text = coerce.to_string(value) or ""
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH)
    return " ".join(text.split()).casefold()


def _identifier(normalize: Callable[[str], str]) -> Callable[[Any], Any]:
    def norm(value: Any) -> Any:
        text = unicodedata.normalize("NFKC", coerce.to_string(value) or "").translate(_ZERO_WIDTH).strip()
        try:
            return normalize(text)
        except IdentifierError:
            return text.upper()
    return norm


def _typed(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def norm(value: Any) -> Any:
        if isinstance(value, str):
            value = unicodedata.normalize("NFKC", value)
        result = convert(value)
        if isinstance(result, datetime):
            return (result if result.tzinfo else result.replace(tzinfo=UTC)).astimezone(UTC)
        return result
    return norm


def normalizer(field: Field) -> Callable[[Any], Any]:
    """The normal form a claimed and a stored value of `field` are compared in: text NFKC-folded,
    trimmed, inner spaces collapsed and case-folded; identifiers by their national rules
    (a citizen ID with lower-case x, or in its 15-digit form, equals its 18-digit form); other
    types read as ingest reads them. Raises ValueError for a claim that cannot be read."""
    if field.type == "string":
        match field.check:
            case "citizen_id":
                return _identifier(normalize_citizen_id)
            case "uscc":
                return _identifier(str.upper)
            case "mobile":
                return _identifier(normalize_mobile)
        return _text_norm
    return _typed(coerce.coercer(field.type))
