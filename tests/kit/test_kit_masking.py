"""Masking rules: the documented examples, odd input (empty, short, None, non-BMP), determinism."""

from __future__ import annotations

from datetime import date

import pytest

from onceonly.kit.masking import (
    REDACTED,
    RULES,
    MaskingRuleError,
    is_rule,
    keep,
    mask,
    rule,
)


@pytest.mark.parametrize(("spec", "value", "expected"), [
    ("name", "张三明", "张*明"),
    ("name", "张三", "张*"),
    ("name", "欧阳娜娜", "欧**娜"),
    ("name", "张", "*"),
    ("name", " 李四 ", "李*"),
    ("citizen_id", "11010519900101002X", "110105********002X"),
    ("citizen_id", "110105900101002", "110105*****1002"),
    ("mobile", "13812345678", "138****5678"),
    ("uscc", "91341802MA2N0X1234", "91341802********34"),
    ("address", "北京市朝阳区建国路88号", "北京市朝阳区****"),
    ("address", "安徽省宣城市宣州区鳌峰街道梅园路1号", "安徽省宣城市宣州区****"),
    ("address", "广西壮族自治区南宁市青秀区民族大道100号", "广西壮族自治区南宁市青秀区****"),
    ("address", "江苏省苏州市昆山市玉山镇人民路5号", "江苏省苏州市昆山市****"),
    ("address", "内蒙古自治区锡林郭勒盟正蓝旗上都镇", "内蒙古自治区锡林郭勒盟正蓝旗****"),
    ("address", "人民路5号", "****"),
    ("email", "zhangsan@example.com", "z****@example.com"),
    ("email", "not-an-address", "n*************"),
    ("redact", "anything at all", REDACTED),
    ("redact", "x", REDACTED),
    ("keep:2:3", "ABCDEFGH", "AB***FGH"),
    ("keep:0:4", "13812345678", "*******5678"),
    ("keep:1:0", "秘密", "秘*"),
])
def test_documented_examples(spec: str, value: str, expected: str) -> None:
    assert mask(value, spec) == expected


@pytest.mark.parametrize("spec", [*RULES, "keep:1:1"])
def test_none_and_empty(spec: str) -> None:
    assert mask(None, spec) is None
    assert mask("", spec) == ""


@pytest.mark.parametrize(("spec", "value"), [
    ("citizen_id", "1234567890"), ("citizen_id", "12"), ("mobile", "1381234"), ("uscc", "9134"),
    ("keep:3:3", "abcdef"),
])
def test_too_short_to_keep_both_ends_is_starred_entirely(spec: str, value: str) -> None:
    assert mask(value, spec) == "*" * len(value)


def test_non_bmp_characters_are_whole_characters() -> None:
    # 𠀾 and 𡃁 are outside the BMP (two UTF-16 code units each): whole characters are kept or starred.
    assert mask("𠀾𡃁明", "name") == "𠀾*明"
    assert mask("𠀾𡃁", "name") == "𠀾*"
    assert mask("王𡃁", "name") == "王*"
    assert mask("😀😀😀😀", "keep:1:1") == "😀**😀"
    masked = mask("𠀾" * 18, "citizen_id")
    assert masked == "𠀾" * 6 + "*" * 8 + "𠀾" * 4


def test_non_string_values_are_masked_as_text() -> None:
    assert mask(13812345678, "mobile") == "138****5678"
    assert mask(date(2024, 5, 6), "keep:4:0") == "2024******"
    assert mask(3.5, "redact") == REDACTED


def test_deterministic() -> None:
    assert {mask("11010519900101002X", "citizen_id") for _ in range(5)} == {"110105********002X"}


@pytest.mark.parametrize("bad", ["", "nope", "keep", "keep:1", "keep:-1:2", "keep:a:b", "keep:100:1",
                                 "NAME", "name ", "'; DROP TABLE x; --", "名" * 10_000])
def test_unknown_rules_are_refused(bad: str) -> None:
    assert not is_rule(bad)
    with pytest.raises(MaskingRuleError) as exc:
        rule(bad)
    assert len(str(exc.value)) < 200  # a huge name is cut in the message


def test_keep_rejects_negative_counts() -> None:
    with pytest.raises(MaskingRuleError):
        keep("abc", -1, 0)


def test_every_named_rule_is_listed() -> None:
    assert set(RULES) == {"name", "citizen_id", "mobile", "uscc", "address", "email", "redact"}
    assert all(is_rule(r) for r in RULES)
