"""Masking (脱敏) by rule name: pure and deterministic, so the same value always masks the same
way — exchange grants and open-data releases share these rules and their names.

A rule is named by a string: one of `RULES` (``name``, ``citizen_id``, ``mobile``, ``uscc``,
``address``, ``email``, ``redact``) or the generic ``keep:N:M`` (keep the first N and last M
characters). Values are masked per Unicode code point, so a name written with characters outside
the Basic Multilingual Plane (e.g. 𠀾) loses whole characters, never half a surrogate pair.
`None` stays `None`; any other non-string value is masked as its text, and the result is text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

STAR = "*"
REDACTED = "******"  # fixed width: full redaction does not reveal the length
MASKED_TAIL = "****"  # addresses and e-mail local parts: fixed width for the same reason


class MaskingRuleError(ValueError):
    """An unknown or malformed rule name."""


def keep(value: str, first: int, last: int) -> str:
    """Keep `first` leading and `last` trailing characters, star the rest (same length).
    A value too short to keep both ends and still hide one character is starred entirely."""
    if first < 0 or last < 0:
        raise MaskingRuleError("keep: counts must not be negative")
    n = len(value)
    if n == 0:
        return value
    if first + last >= n:
        return STAR * n
    return value[:first] + STAR * (n - first - last) + (value[n - last:] if last else "")


def mask_name(value: str) -> str:
    """张三明 → 张*明, 张三 → 张*, 欧阳娜娜 → 欧**娜; one character → *."""
    value = value.strip()
    n = len(value)
    if n <= 1:
        return STAR * n
    if n == 2:
        return value[0] + STAR
    return value[0] + STAR * (n - 2) + value[-1]


def mask_citizen_id(value: str) -> str:
    """110105199001011002X style: the region (first 6) and the last 4 stay: 110105********002X."""
    return keep(value.strip(), 6, 4)


def mask_mobile(value: str) -> str:
    """13812345678 → 138****5678 (3 + stars + 4)."""
    return keep(value.strip(), 3, 4)


def mask_uscc(value: str) -> str:
    """A unified social credit code keeps its registration authority, kind and division (first 8)
    and the last 2: 91341802MA2N0X1234 → 91341802********34."""
    return keep(value.strip(), 8, 2)


# The smallest unit kept: a district or county-level name (区, 县, 旗, county-level 市).
_AUTONOMOUS = ("自治区", "特别行政区")
_DISTRICT_SUFFIXES = ("区", "县", "旗")


def mask_address(value: str) -> str:
    """Keep the address up to its district or county, hide the rest with a fixed tail:
    北京市朝阳区建国路88号 → 北京市朝阳区****. Without a district or county, keep up to the last
    city (市) among the first 12 characters; without either, keep nothing."""
    value = value.strip()
    if not value:
        return value
    cut = _district_end(value)
    if cut is None:
        head = value[:12]
        cut = head.rfind("市") + 1 or None
    return (value[:cut] if cut else "") + MASKED_TAIL


def _district_end(value: str) -> int | None:
    """Index after the first district-level suffix, skipping 自治区/特别行政区 (province level)."""
    i = 0
    while i < len(value):
        if value[i] in _DISTRICT_SUFFIXES:
            if value[i] == "区" and any(value[: i + 1].endswith(a) for a in _AUTONOMOUS):
                i += 1
                continue
            return i + 1
        i += 1
    return None


def mask_email(value: str) -> str:
    """zhangsan@example.com → z****@example.com; not an address → first character kept."""
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return keep(value, 1, 0) if value else value
    return local[0] + MASKED_TAIL + "@" + domain


def redact(value: str) -> str:
    """Full redaction: a fixed-width mask whatever the value (an empty value stays empty)."""
    return REDACTED if value else value


RULES: dict[str, Callable[[str], str]] = {
    "name": mask_name,
    "citizen_id": mask_citizen_id,
    "mobile": mask_mobile,
    "uscc": mask_uscc,
    "address": mask_address,
    "email": mask_email,
    "redact": redact,
}
RULE_LABELS = {
    "name": "姓名：张*明",
    "citizen_id": "身份证号：前6位与后4位",
    "mobile": "手机号：138****5678",
    "uscc": "统一社会信用代码：前8位与后2位",
    "address": "地址：保留至区县",
    "email": "电子邮箱：z****@example.com",
    "redact": "完全遮蔽",
    "keep:N:M": "保留前N位与后M位",
}
# Suggested rule for a field by its built-in check (catalog `Field.check`).
RULE_FOR_CHECK = {"citizen_id": "citizen_id", "mobile": "mobile", "uscc": "uscc"}
_KEEP = re.compile(r"^keep:(\d{1,2}):(\d{1,2})$")


def rule(spec: str) -> Callable[[str], str]:
    """The masking function of a rule name; MaskingRuleError names what is wrong."""
    if not isinstance(spec, str):
        raise MaskingRuleError("a masking rule is a name")
    if spec in RULES:
        return RULES[spec]
    if m := _KEEP.match(spec):
        first, last = int(m.group(1)), int(m.group(2))
        return lambda v: keep(v, first, last)
    shown = spec if len(spec) <= 40 else spec[:40] + "…"
    raise MaskingRuleError(f"unknown masking rule {shown!r}; one of {', '.join(RULES)} or keep:N:M")


def is_rule(spec: str) -> bool:
    try:
        rule(spec)
    except MaskingRuleError:
        return False
    return True


def mask(value: Any, spec: str) -> str | None:
    """Mask one value by rule name. None stays None; other values are masked as text."""
    func = rule(spec)
    if value is None:
        return None
    return func(value if isinstance(value, str) else str(value))
