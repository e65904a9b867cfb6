"""Cell coercion: every accepted form and every rule id of onceonly.ingest.coerce."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest

from onceonly.ingest.coerce import (
    CoercionError,
    clean_text,
    coercer,
    from_excel_serial,
    quote,
    to_boolean,
    to_date,
    to_datetime,
    to_integer,
    to_number,
    to_string,
)


def rule_of(fn: Any, value: Any) -> str:
    with pytest.raises(CoercionError) as info:
        fn(value)
    return info.value.rule


# -- cleaning --------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [" 张三 ", "\u3000张三\u3000", "\u200b张三", "张\u200b三", "\ufeff张三\u00a0",
                                 "\t张三\r\n", "\u2060张三\u200d"])
def test_cleaning_trims_spaces_and_zero_width(raw: str) -> None:
    assert clean_text(raw) == "张三"
    assert to_string(raw) == "张三"


@pytest.mark.parametrize("raw", ["", "   ", "\u3000", "\u200b", None])
def test_empty_is_none_for_every_type(raw: str | None) -> None:
    for kind in ("string", "integer", "number", "boolean", "date", "datetime"):
        assert coercer(kind)(raw) is None


def test_unknown_type_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        coercer("blob")


# -- string ----------------------------------------------------------------------------------

def test_string_from_excel_numbers_keeps_ids_and_phones_intact() -> None:
    assert to_string(13812345678.0) == "13812345678"
    assert to_string(123.0) == "123"
    assert to_string(341802800101123.0) == "341802800101123"  # a 15-digit legacy ID survives
    assert to_string(12.5) == "12.5"
    assert to_string(42) == "42"
    assert to_string(True) == "true"
    assert to_string(date(2018, 8, 20)) == "2018-08-20"
    assert to_string(datetime(2018, 8, 20, 12, 30)) == "2018-08-20T12:30:00"


def test_string_rejects_numbers_excel_already_mangled() -> None:
    assert rule_of(to_string, "3.41802E+17") == "string.scientific"
    assert rule_of(to_string, "3.41802e+17") == "string.scientific"
    assert rule_of(to_string, 3.4180219900101126e17) == "string.precision"
    assert to_string("a+b") == "a+b"  # a plus sign alone is fine


def test_string_rejects_nested_json() -> None:
    assert rule_of(to_string, {"a": 1}) == "value.nested"
    assert rule_of(to_string, [1, 2]) == "value.nested"


def test_messages_quote_the_value_truncated() -> None:
    with pytest.raises(CoercionError) as info:
        to_integer("x" * 80)
    assert "x" * 50 + "…" in info.value.zh and "x" * 51 not in info.value.en
    assert info.value.rule == "integer.format"
    assert quote("short") == "short"


# -- integer and number ----------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "value"), [
    ("1234", 1234), ("1,234", 1234), ("1,234,567", 1234567), ("１２３４", 1234), ("－５", -5), ("+7", 7),
    ("1.0", 1), ("１，２３４", 1234), (12.0, 12), (7, 7), (" 42 ", 42), ("-0", 0),
])
def test_integer_forms(raw: object, value: int) -> None:
    assert to_integer(raw) == value


@pytest.mark.parametrize(("raw", "rule"), [
    ("1.5", "integer.fraction"), (1.5, "integer.fraction"), ("abc", "integer.format"), ("1e3", "integer.format"),
    ("1,23", "integer.format"), ("12%", "integer.format"), (True, "integer.format"), ("nan", "integer.format"),
    (str(2**63), "integer.range"), (float("inf"), "integer.format"),
])
def test_integer_rejections(raw: object, rule: str) -> None:
    assert rule_of(to_integer, raw) == rule


@pytest.mark.parametrize(("raw", "value"), [
    ("1234.5", 1234.5), ("1,234.5", 1234.5), ("１２.５", 12.5), ("-3", -3.0), (2, 2.0), (2.5, 2.5), ("1e3", 1000.0),
])
def test_number_forms(raw: object, value: float) -> None:
    assert to_number(raw) == value


@pytest.mark.parametrize("raw", ["12%", "abc", "nan", "inf", "-Infinity", "1,23.4", float("nan"), True])
def test_number_rejections(raw: object) -> None:
    assert rule_of(to_number, raw) == "number.format"


# -- boolean ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["是", "Y", "y", "yes", "YES", "true", "True", "T", "1", 1, 1.0, True, "Ｙ"])
def test_boolean_true(raw: object) -> None:
    assert to_boolean(raw) is True


@pytest.mark.parametrize("raw", ["否", "N", "no", "false", "FALSE", "f", "0", 0, False])
def test_boolean_false(raw: object) -> None:
    assert to_boolean(raw) is False


@pytest.mark.parametrize("raw", ["对", "maybe", "2", 2, "是的"])
def test_boolean_rejections(raw: object) -> None:
    assert rule_of(to_boolean, raw) == "boolean.format"


# -- date ------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "2018-08-20", "2018/8/20", "2018/08/20", "2018.8.20", "2018年8月20日", "2018年08月20日", "20180820",
    "2018-8-20", "２０１８年８月２０日", "2018-08-20 12:30", "2018/8/20 12:30:05", "2018-08-20T12:30:00",
    "2018年8月20日 12时30分", "20180820 123000", "43332", 43332, 43332.75, 20180820, 20180820.0,
    date(2018, 8, 20), datetime(2018, 8, 20, 23, 59), " 2018-08-20 ", "2018 年 8 月 20 日",
])
def test_date_forms(raw: object) -> None:
    assert to_date(raw) == date(2018, 8, 20)


@pytest.mark.parametrize(("raw", "rule"), [
    ("2018-02-30", "date.invalid"), ("2018/13/1", "date.invalid"), ("20181301", "date.invalid"),
    ("08/20/2018", "date.format"), ("20/08/2018", "date.format"), ("18-8-20", "date.format"),
    ("2018年8月", "date.format"), ("abc", "date.format"), ("201808", "date.format"),
    ("0", "date.range"), (0, "date.range"), ("60", "date.range"), (3_000_000, "date.range"),
    (time(12, 0), "date.format"), (True, "date.format"),
])
def test_date_rejections(raw: object, rule: str) -> None:
    assert rule_of(to_date, raw) == rule


def test_excel_serials_follow_the_1900_date_system() -> None:
    assert from_excel_serial(1, 1).date() == date(1900, 1, 1)
    assert from_excel_serial(59, 59).date() == date(1900, 2, 28)
    assert from_excel_serial(61, 61).date() == date(1900, 3, 1)
    assert from_excel_serial(45292, 45292).date() == date(2024, 1, 1)
    assert from_excel_serial(2958465, 2958465).date() == date(9999, 12, 31)
    assert from_excel_serial(43332.5, 43332.5) == datetime(2018, 8, 20, 12, 0)


# -- datetime --------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "value"), [
    ("2018-08-20 12:30:05", datetime(2018, 8, 20, 12, 30, 5)),
    ("2018-08-20T12:30:05", datetime(2018, 8, 20, 12, 30, 5)),
    ("2018/8/20 12:30", datetime(2018, 8, 20, 12, 30)),
    ("2018.8.20 9:05", datetime(2018, 8, 20, 9, 5)),
    ("2018年8月20日12时30分05秒", datetime(2018, 8, 20, 12, 30, 5)),
    ("2018-08-20", datetime(2018, 8, 20)),
    ("20180820", datetime(2018, 8, 20)),
    ("2018-08-20 12:30:05.250", datetime(2018, 8, 20, 12, 30, 5, 250000)),
    (43332.5, datetime(2018, 8, 20, 12, 0)),
    ("43332.5", datetime(2018, 8, 20, 12, 0)),
    (date(2018, 8, 20), datetime(2018, 8, 20)),
    (datetime(2018, 8, 20, 1, 2, 3), datetime(2018, 8, 20, 1, 2, 3)),
])
def test_datetime_forms_naive(raw: object, value: datetime) -> None:
    got = to_datetime(raw)
    assert got == value and got is not None and got.tzinfo is None


def test_datetime_time_zones_are_kept() -> None:
    got = to_datetime("2018-08-20T12:30:00+08:00")
    assert got is not None and got.utcoffset() == timedelta(hours=8)
    got = to_datetime("2018-08-20T04:30:00Z")
    assert got == datetime(2018, 8, 20, 4, 30, tzinfo=UTC)
    got = to_datetime("2018-08-20 12:30 +0800")
    assert got is not None and got.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(("raw", "rule"), [
    ("2018-08-20 25:00", "datetime.invalid"), ("2018-08-20 12:61", "datetime.invalid"),
    ("2018-02-30 12:00", "datetime.invalid"), ("12:30", "datetime.format"), ("yesterday", "datetime.format"),
    (-1, "datetime.range"),
])
def test_datetime_rejections(raw: object, rule: str) -> None:
    assert rule_of(to_datetime, raw) == rule
