"""GB/T 2260 administrative divisions, read from python-stdnum's county-level table.

Source: python-stdnum `cn/loc.dat` (compiled from the published GB/T 2260 code tables, with the
years each code was in use). Retired codes stay known, because citizen IDs issued under them
remain valid; only current codes are offered in the code list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

_ENTRY = re.compile(r"^\[(\d{4})?-(\d{4})?\](.*)$")
SOURCE = "GB/T 2260 中华人民共和国行政区划代码（经 python-stdnum cn/loc.dat 整理，含历年变更）"


@dataclass(frozen=True)
class Division:
    code: str
    name: str
    current: bool
    level: str  # province / prefecture / county


def _parse_names(raw: str) -> tuple[str, bool]:
    """Pick the latest name; a code is current when its last range is open-ended."""
    name, current = raw, True
    for part in raw.split(","):
        m = _ENTRY.match(part.strip())
        if m:
            name, current = m.group(3), m.group(2) is None
        else:
            name, current = part.strip(), True
    return name, current


@lru_cache(maxsize=1)
def all_divisions() -> dict[str, Division]:
    text = resources.files("stdnum.cn").joinpath("loc.dat").read_text(encoding="utf-8")
    out: dict[str, Division] = {}
    province = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            province = line.split()[0]
            continue
        code_part, _, rest = line.strip().partition(" ")
        value = rest.split("=", 1)[1].strip().strip('"')
        code = province + code_part
        name, current = _parse_names(value)
        level = "province" if code.endswith("0000") else "prefecture" if code.endswith("00") else "county"
        out[code] = Division(code, name, current, level)
    return out


def is_known_division(code: str) -> bool:
    return code in all_divisions()


def current_divisions() -> list[Division]:
    return [d for d in all_divisions().values() if d.current and d.name not in ("市辖区", "县")]
