"""GB/T 2260 administrative divisions."""

from __future__ import annotations

from onceonly.kit.divisions import SOURCE, all_divisions, current_divisions, is_known_division


def test_xuancheng_is_current() -> None:
    d = all_divisions()["341800"]
    assert d.name == "宣城市"
    assert d.current and d.level == "prefecture"
    assert all_divisions()["340000"].level == "province"
    assert all_divisions()["341802"].level == "county"


def test_retired_code_is_still_known() -> None:
    """崇文区 (110103) was merged into 东城区 in 2010; IDs issued under it remain valid."""
    d = all_divisions()["110103"]
    assert d.name == "崇文区" and not d.current
    assert is_known_division("110103")
    codes = {x.code for x in current_divisions()}
    assert "110103" not in codes
    assert "341800" in codes


def test_unknown_code() -> None:
    assert not is_known_division("999999")
    assert not is_known_division("")


def test_current_list_skips_placeholders_and_names_its_source() -> None:
    assert all(d.name not in ("市辖区", "县") for d in current_divisions())
    assert len(current_divisions()) > 3000
    assert "GB/T 2260" in SOURCE
