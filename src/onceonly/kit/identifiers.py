"""National identifier checks: citizen ID (GB 11643), USCC (GB 32100), mobile numbers.

python-stdnum does the check-digit arithmetic; this module adds normalization (15 → 18 digit
upgrade, case) and messages that say which rule failed.
"""

from __future__ import annotations

import re
import time
from datetime import date

from stdnum.cn import ric, uscc

from onceonly.kit.divisions import is_known_division

MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


MESSAGES: dict[str, tuple[str, str]] = {
    "citizen_id.format": ("身份证号应为18位（末位可为X）", "citizen ID must be 18 chars, the last may be X"),
    "citizen_id.birth_date": ("身份证号中的出生日期无效", "the birth date inside is not a real past date"),
    "citizen_id.check_digit": ("身份证号校验码错误", "the check digit (ISO 7064 MOD 11-2) is wrong"),
    "citizen_id.region": ("身份证号地址码不是已知行政区划", "the region code is not a known GB/T 2260 code"),
    "uscc.format": ("统一社会信用代码应为18位且不含I、O、Z、S、V", "USCC must be 18 chars of 0-9A-HJ-NPQRTUWXY"),
    "uscc.check_digit": ("统一社会信用代码校验码错误", "the USCC check character (GB 32100) is wrong"),
    "uscc.organization_code": ("统一社会信用代码中的组织机构代码校验失败",
                               "the embedded organization code (GB 11714) fails its check"),
    "mobile.format": ("手机号应为1开头的11位数字", "mobile must be 11 digits starting 1[3-9]"),
}


class IdentifierError(ValueError):
    """A value failed a national identifier rule; `rule` names it for reports."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.zh, self.en = MESSAGES[rule]
        super().__init__(f"{self.zh} / {self.en}")


def _today() -> date:
    """date.today() costs ~0.4 µs; ingest asks once per row, so remember it for a minute."""
    global _today_cache
    now = time.monotonic()
    if now - _today_cache[0] > 60:
        _today_cache = (now, date.today())
    return _today_cache[1]


_today_cache: tuple[float, date] = (-1e9, date(1970, 1, 1))


def id_check_digit(body17: str) -> str:
    """GB 11643 check character of the first 17 digits (python-stdnum expects the full
    18-character number and ignores its last character, so a placeholder is appended)."""
    return str(ric.calc_check_digit(body17 + "0"))


def upgrade_citizen_id_15(value: str) -> str:
    """Legacy 15-digit IDs: insert century 19 and append the MOD 11-2 check digit."""
    body = value[:6] + "19" + value[6:]
    return body + id_check_digit(body)


def normalize_citizen_id(value: str) -> str:
    """Return the canonical 18-char ID or raise IdentifierError naming the failed rule."""
    raw = value.strip().upper()
    if len(raw) == 15 and raw.isdigit():
        raw = upgrade_citizen_id_15(raw)
    if len(raw) != 18 or not raw[:17].isdigit() or not (raw[17].isdigit() or raw[17] == "X"):
        raise IdentifierError("citizen_id.format")
    try:
        birth = date(int(raw[6:10]), int(raw[10:12]), int(raw[12:14]))
    except ValueError:
        raise IdentifierError("citizen_id.birth_date") from None
    if birth > _today() or birth.year < 1850:
        raise IdentifierError("citizen_id.birth_date")
    if id_check_digit(raw[:17]) != raw[17]:
        raise IdentifierError("citizen_id.check_digit")
    if not is_known_division(raw[:6]):
        raise IdentifierError("citizen_id.region")
    return raw


def citizen_id_birth_date(value: str) -> date:
    return date(int(value[6:10]), int(value[10:12]), int(value[12:14]))


def citizen_id_sex(value: str) -> str:
    """GB/T 2261.1 code: odd 17th digit is male (1), even is female (2)."""
    return "1" if int(value[16]) % 2 else "2"


def normalize_uscc(value: str) -> str:
    raw = value.strip().upper()
    # GB 32100: positions 1-2 (registration authority, kind) may be letters, e.g. N2 for rural
    # collective economic organizations or Y1; python-stdnum's validate() wrongly insists on digits
    # there, so only its check-character arithmetic is used.
    if len(raw) != 18 or any(ch not in _USCC_ALPHABET for ch in raw) or not raw[2:8].isdigit():
        raise IdentifierError("uscc.format")
    if uscc.calc_check_digit(raw[:17]) != raw[17]:
        raise IdentifierError("uscc.check_digit")
    if org_code_check(raw[8:16]) != raw[16]:
        raise IdentifierError("uscc.organization_code")
    return raw


def normalize_mobile(value: str) -> str:
    raw = re.sub(r"[\s-]", "", value.strip())
    if raw.startswith("+86"):
        raw = raw[3:]
    if not MOBILE_RE.match(raw):
        raise IdentifierError("mobile.format")
    return raw


def make_citizen_id(region: str, birth: date, sequence: int, male: bool) -> str:
    """Build a valid ID (for synthetic data): sequence 0-499, sex in the parity of digit 17."""
    order = (sequence % 500) * 2 + (1 if male else 0)
    body = f"{region}{birth:%Y%m%d}{order:03d}"
    return body + id_check_digit(body)


def make_uscc(registration: str, kind: str, region: str, org_body: str) -> str:
    """Build a valid USCC from its parts; org_body is the 8-char GB 11714 body."""
    org9 = org_body + org_code_check(org_body)
    body = f"{registration}{kind}{region}{org9}"
    return body + uscc.calc_check_digit(body)


def org_code_check(body: str) -> str:
    """GB 11714 check character for the 8-char organization code body."""
    weights = (3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c, 36) * w for c, w in zip(body, weights, strict=True))
    digit = 11 - total % 11
    return {10: "X", 11: "0"}.get(digit, str(digit))
