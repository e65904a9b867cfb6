"""Cell values → typed values, one fast coercer per field type.

`coercer(type)` returns a function ``raw → typed | None`` that raises `CoercionError` with a stable
rule id and a message quoting the value. Every coercer first cleans text: it trims ASCII spaces,
the ideographic space U+3000, NBSP and zero-width characters (U+200B/C/D, U+2060, U+FEFF; those are
also removed inside the value, where copying from web pages leaves them); an empty result is
None (the required check decides whether that is a problem).

- string: text as is; Excel numbers 123.0 → "123"; dates → ISO text.
  Rules: string.scientific ("3.41802E+17": Excel mangled a long number), string.precision (a
  number of more than 15 digits: its last digits are lost), value.nested (JSON object/array).
- integer: 1234, 1,234, full-width １２３４ and signs, 12.0. Rules: integer.format,
  integer.fraction (1.5), integer.range (beyond BIGINT).
- number: as integer plus decimals (1,234.5). Rule: number.format (also NaN/Infinity).
- boolean: 是/否, Y/N, yes/no, true/false, T/F, 1/0 (any case), Excel TRUE/FALSE. Rule: boolean.format.
- date: 2018-08-20, 2018/8/20, 2018.8.20, 2018年8月20日, 20180820 (also as a number), Excel
  serials (numbers, or text of up to 5 digits), any of these with a time (dropped).
  Rules: date.format, date.invalid (no such day), date.range (serial outside 1..2958465).
- datetime: the date forms plus HH:MM[:SS[.ffffff]] or 12时30分[05秒], ISO "T", time zones (Z,
  +08:00; naive values stay naive), Excel serials with fractions. Rules: datetime.format,
  datetime.invalid, datetime.range.

Year-first is the only order read: 08/20/2018 and 20/08/2018 are rejected rather than guessed.
Citizen ID, USCC and mobile normalization are not coercion: the checker applies
onceonly.kit.identifiers after this step.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone
from typing import Any

TYPES = ("string", "integer", "number", "boolean", "date", "datetime")

_SPACES = " \t\r\n\x0b\x0c\u3000\u00a0\u200b\u200c\u200d\u2060\ufeff"
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_EXCEL_EPOCH = date(1899, 12, 30)
_EXCEL_EPOCH_EARLY = date(1899, 12, 31)  # serials below 60, before Excel's phantom 1900-02-29
_MAX_SERIAL = 2958465  # 9999-12-31
_INT_LIMIT = 2**63  # BIGINT in SQLite and PostgreSQL
_EXCEL_DIGITS_LIMIT = 1e15  # Excel keeps 15 significant digits


class CoercionError(ValueError):
    """A value failed a rule; `rule` is stable (e.g. `date.format`), zh/en quote the value."""

    def __init__(self, rule: str, zh: str, en: str) -> None:
        super().__init__(rule)
        self.rule, self.zh, self.en = rule, zh, en


def quote(value: Any) -> str:
    """The value as shown in messages, cut to 50 characters."""
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, date | time) else str(value)
    return text if len(text) <= 50 else text[:50] + "…"


def _q(value: Any) -> str:
    return f'"{quote(value)}"'


def clean_text(value: str) -> str:
    """Trim ASCII/full-width/no-break spaces and drop zero-width characters."""
    if value.isascii():
        return value.strip()
    value = value.strip(_SPACES)
    if "\u200b" in value or "\u200c" in value or "\u200d" in value or "\u2060" in value or "\ufeff" in value:
        value = value.translate(_ZERO_WIDTH).strip(_SPACES)
    return value


def _nested(value: Any) -> CoercionError:
    return CoercionError("value.nested", f"值“{quote(value)}”是嵌套的对象或数组，应为单个值",
                         f"value {_q(value)} is a nested object or array, not a single value")


def _unsupported(kind: str, value: Any) -> CoercionError:
    if isinstance(value, dict | list | tuple):
        return _nested(value)
    return CoercionError(f"{kind}.format", f"值“{quote(value)}”无法作为{_ZH_TYPE[kind]}",
                         f"value {_q(value)} cannot be read as {kind}")


_ZH_TYPE = {"string": "文本", "integer": "整数", "number": "数值", "boolean": "是/否", "date": "日期",
            "datetime": "日期时间"}


# --- string ---------------------------------------------------------------------------------

_SCIENTIFIC = re.compile(r"^[+-]?\d(?:\.\d+)?[eE]\+\d{1,3}$")


def _string_from_float(value: float) -> str:
    if value.is_integer():
        if abs(value) >= _EXCEL_DIGITS_LIMIT:
            raise CoercionError(
                "string.precision",
                f"值{value:.15g}是超过15位的数字（如 Excel 把身份证号存成了数值），后几位已丢失；"
                "请把该列设为文本后重新录入",
                f"value {value:.15g} is a number of more than 15 digits (Excel stored e.g. an ID number as a "
                "number) and its last digits are lost; format the column as text and enter the values again")
        return str(int(value))
    if not math.isfinite(value):
        raise _unsupported("string", value)
    return f"{value:.15g}"


def to_string(value: Any) -> str | None:
    if value.__class__ is str:
        s = value.strip() if value.isascii() else clean_text(value)
        if "+" in s and _SCIENTIFIC.match(s):
            raise CoercionError(
                "string.scientific",
                f"值“{s}”是科学计数法，Excel 已把长数字（如身份证号）截断；请把该列设为文本后重新录入",
                f"value {_q(s)} is in scientific notation: Excel mangled a long number (e.g. an ID number); "
                "format the column as text and enter the values again")
        return s or None
    if value is None:
        return None
    if value.__class__ is float:
        return _string_from_float(value)
    if value.__class__ is int:
        return str(value)
    if value.__class__ is bool:
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict | list | tuple):
        raise _nested(value)
    return clean_text(str(value)) or None


# --- integer and number ---------------------------------------------------------------------

_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")


def _numeric_text(s: str, kind: str) -> str:
    """Full-width forms and thousands separators removed, or CoercionError."""
    t = unicodedata.normalize("NFKC", s).replace(" ", "").replace("，", ",")
    if "," in t:
        if not _GROUPED.match(t):
            raise _unsupported(kind, s)
        t = t.replace(",", "")
    return t


def _int_from_float(value: float, shown: Any) -> int:
    if not value.is_integer():
        raise CoercionError("integer.fraction", f"值“{quote(shown)}”不是整数",
                            f"value {_q(shown)} is not a whole number")
    return _int_range(int(value), shown)


def _int_range(value: int, shown: Any) -> int:
    if -_INT_LIMIT <= value < _INT_LIMIT:
        return value
    raise CoercionError("integer.range", f"值“{quote(shown)}”超出整数范围",
                        f"value {_q(shown)} is out of the integer range")


def _int_text(s: str) -> int:
    t = _numeric_text(s, "integer")
    try:
        return _int_range(int(t), s)
    except ValueError:
        pass
    try:
        f = float(t)
    except ValueError:
        raise _unsupported("integer", s) from None
    if "e" in t.lower() or not math.isfinite(f):
        raise _unsupported("integer", s)
    return _int_from_float(f, s)


def to_integer(value: Any) -> int | None:
    if value.__class__ is str:
        s = value.strip() if value.isascii() else clean_text(value)
        if not s:
            return None
        if s.isdigit() and len(s) < 19 and s.isascii():
            return int(s)
        return _int_text(s)
    if value is None:
        return None
    if value.__class__ is int:
        return _int_range(value, value)
    if value.__class__ is float:
        if not math.isfinite(value):
            raise _unsupported("integer", value)
        return _int_from_float(value, value)
    raise _unsupported("integer", value)


def to_number(value: Any) -> float | None:
    if value.__class__ is str:
        s = value.strip() if value.isascii() else clean_text(value)
        if not s:
            return None
        try:
            f = float(s)
        except ValueError:
            f = _float_text(s)
        else:
            if not math.isfinite(f):
                raise _unsupported("number", s)
        return f
    if value is None:
        return None
    if value.__class__ is float:
        if not math.isfinite(value):
            raise _unsupported("number", value)
        return value
    if value.__class__ is int:
        return float(value)
    raise _unsupported("number", value)


def _float_text(s: str) -> float:
    t = _numeric_text(s, "number")
    try:
        f = float(t)
    except ValueError:
        raise _unsupported("number", s) from None
    if not math.isfinite(f):
        raise _unsupported("number", s)
    return f


# --- boolean --------------------------------------------------------------------------------

BOOLEAN_WORDS: dict[str, bool] = {
    "是": True, "否": False, "y": True, "n": False, "yes": True, "no": False, "true": True, "false": False,
    "t": True, "f": False, "1": True, "0": False,
}


def to_boolean(value: Any) -> bool | None:
    if value.__class__ is str:
        s = value.strip() if value.isascii() else clean_text(value)
        if not s:
            return None
        b = BOOLEAN_WORDS.get(s)
        if b is None:
            b = BOOLEAN_WORDS.get(unicodedata.normalize("NFKC", s).casefold())
            if b is None:
                raise CoercionError("boolean.format", f"值“{quote(s)}”不是是/否（可用 是/否、Y/N、true/false、1/0）",
                                    f"value {_q(s)} is not a boolean (use 是/否, Y/N, true/false, 1/0)")
        return b
    if value is None:
        return None
    if value.__class__ is bool:
        return bool(value)
    if value.__class__ in (int, float) and value in (0, 1):
        return bool(value)
    raise CoercionError("boolean.format", f"值“{quote(value)}”不是是/否", f"value {_q(value)} is not a boolean")


# --- date and datetime ----------------------------------------------------------------------

_TIME = r"(?P<H>\d{1,2})[:时](?P<M>\d{1,2})(?:[:分](?P<S>\d{1,2})(?:\.(?P<f>\d{1,6})\d*)?秒?)?分?"
_TZ = r"(?P<tz>Z|[+-]\d{2}:?\d{2})?"
_DATE_TEXT = re.compile(
    r"^(?P<y>\d{4})\s*(?:[-/.]\s*(?P<m>\d{1,2})\s*[-/.]\s*(?P<d>\d{1,2})|年\s*(?P<m2>\d{1,2})\s*月\s*(?P<d2>\d{1,2})\s*日?)"
    rf"(?:(?:[T\s]+|(?<=日)){_TIME}\s*{_TZ})?$")
_COMPACT = re.compile(rf"^(?P<y>\d{{4}})(?P<m>\d{{2}})(?P<d>\d{{2}})(?:[T\s]*(?P<t>\d{{6}}|\d{{4}}))?\s*{_TZ}$")
_SERIAL = re.compile(r"^\d{1,5}(?:\.\d+)?$")


def _date_error(s: Any, kind: str = "date") -> CoercionError:
    return CoercionError(
        f"{kind}.format",
        f"值“{quote(s)}”不是可识别的{_ZH_TYPE[kind]}（可用 2018-08-20、2018/8/20、2018年8月20日、20180820）",
        f"value {_q(s)} is not a recognizable {kind} (use 2018-08-20, 2018/8/20, 2018年8月20日, 20180820)")


def _invalid(s: Any, kind: str) -> CoercionError:
    return CoercionError(f"{kind}.invalid", f"值“{quote(s)}”不是真实存在的{_ZH_TYPE[kind]}",
                         f"value {_q(s)} is not a real {kind} (no such day or time)")


def from_excel_serial(serial: float, shown: Any, kind: str = "date") -> datetime:
    """Excel 1900 date system: 1 = 1900-01-01, 60 is Excel's phantom 1900-02-29."""
    if not 1 <= serial <= _MAX_SERIAL + 0.99999999 or int(serial) == 60:
        raise CoercionError(f"{kind}.range", f"值“{quote(shown)}”不在 Excel 日期序号范围内",
                            f"value {_q(shown)} is outside the Excel date serial range")
    days = int(serial)
    base = _EXCEL_EPOCH_EARLY if days < 60 else _EXCEL_EPOCH
    seconds = round((serial - days) * 86400)
    return datetime.combine(base + timedelta(days=days), time()) + timedelta(seconds=seconds)


def _tz(text: str | None) -> timezone | None:
    if not text:
        return None
    if text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def _from_number(value: float, kind: str) -> datetime:
    """A number in a date column: 20180820 typed as a number is yyyymmdd, else an Excel serial."""
    if 10000101 <= value <= 99991231 and float(value).is_integer():
        return _parse_text(str(int(value)), kind)
    if not math.isfinite(value):
        raise _unsupported(kind, value)
    return from_excel_serial(value, value, kind)


def _parse_text(s: str, kind: str) -> datetime:
    """The general path: any accepted textual form → datetime (naive or aware)."""
    t = unicodedata.normalize("NFKC", s) if not s.isascii() else s
    m = _DATE_TEXT.match(t)
    if m:
        y, mo, d = int(m["y"]), int(m["m"] or m["m2"]), int(m["d"] or m["d2"])
        hh, mm, ss, frac, tz = m["H"], m["M"], m["S"], m["f"], m["tz"]
    else:
        m = _COMPACT.match(t)
        if m:
            y, mo, d = int(m["y"]), int(m["m"]), int(m["d"])
            clock = m["t"] or ""
            hh, mm, ss, frac, tz = clock[:2] or None, clock[2:4] or None, clock[4:6] or None, None, m["tz"]
        elif _SERIAL.match(t):
            return from_excel_serial(float(t), s, kind)
        else:
            raise _date_error(s, kind)
    try:
        return datetime(y, mo, d, int(hh or 0), int(mm or 0), int(ss or 0),
                        int((frac or "0").ljust(6, "0")), tzinfo=_tz(tz))
    except ValueError:
        raise _invalid(s, kind) from None


def to_date(value: Any) -> date | None:
    if value.__class__ is str:
        s = value.strip() if value.isascii() else clean_text(value)
        if len(s) == 10 and s[4] == "-" and s[7] == "-":
            try:
                return date.fromisoformat(s)
            except ValueError:
                pass
        if not s:
            return None
        return _parse_text(s, "date").date()
    if value is None:
        return None
    if value.__class__ is date:
        return value
    if isinstance(value, datetime):
        return value.date()
    if value.__class__ in (int, float):
        return _from_number(value, "date").date()
    raise _unsupported("date", value)


def to_datetime(value: Any) -> datetime | None:
    if value.__class__ is str:
        s = value.strip() if value.isascii() else clean_text(value)
        if len(s) == 19 and s[4] == "-" and s[10] in " T" and s[13] == ":":
            try:
                return datetime.fromisoformat(s)
            except ValueError:
                pass
        if not s:
            return None
        return _parse_text(s, "datetime")
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    if value.__class__ is date:
        return datetime.combine(value, time())
    if value.__class__ in (int, float):
        return _from_number(value, "datetime")
    raise _unsupported("datetime", value)


COERCERS: dict[str, Callable[[Any], Any]] = {
    "string": to_string,
    "integer": to_integer,
    "number": to_number,
    "boolean": to_boolean,
    "date": to_date,
    "datetime": to_datetime,
}


def coercer(field_type: str) -> Callable[[Any], Any]:
    """The coercer of a catalog field type; unknown types are a catalog error (ValueError)."""
    try:
        return COERCERS[field_type]
    except KeyError:
        raise ValueError(f"unknown field type {field_type!r}; expected one of {', '.join(TYPES)}") from None
