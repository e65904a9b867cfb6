"""Header → field mapping: name, title, code, normalized forms, explicit mapping files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from onceonly.ingest.mapping import build_column_map, load_mapping_file, missing_required_error, normalize_header
from onceonly.ingest.types import IngestInputError


@dataclass
class F:
    name: str
    title: str
    required: bool = False
    code: str | None = None


FIELDS = [
    F("citizen_id", "身份证号", required=True, code="DE0001"),
    F("name", "姓名", required=True),
    F("birth_date", "出生日期"),
    F("mobile", "手机号码"),
]


def error_of(header: list[str], explicit: dict[str, str | None] | None = None, fields: list[F] = FIELDS
             ) -> IngestInputError:
    with pytest.raises(IngestInputError) as info:
        build_column_map(header, fields, explicit)
    return info.value


def test_exact_name_title_and_code() -> None:
    cm = build_column_map(["身份证号", "name", "DE0001x", "出生日期"], FIELDS)
    assert cm.columns == {0: "citizen_id", 1: "name", 3: "birth_date"}
    assert cm.unmapped == ["DE0001x"] and cm.missing_required == []
    assert cm.how == {0: "exact", 1: "exact", 3: "exact"}
    cm = build_column_map(["DE0001", "姓名"], FIELDS)
    assert cm.columns == {0: "citizen_id", 1: "name"}


@pytest.mark.parametrize("header", [
    "身份证号 ", "身 份 证 号", "身份证号\u3000", "*身份证号", "身份证号*", "＊身份证号", "★身份证号", "【身份证号】",
    "身份证号（必填）", "身份证号(必填)", "\u200b身份证号", "CITIZEN_ID", "Citizen ID", "ｃｉｔｉｚｅｎ＿ｉｄ",
    "citizen-id", "*【身份证号】（必填）",
])
def test_normalized_match(header: str) -> None:
    cm = build_column_map([header, "姓名"], FIELDS)
    assert cm.columns[0] == "citizen_id" and cm.how[0] == "normalized"


def test_normalize_header_forms() -> None:
    assert normalize_header("ＡＢＣ　ｄｅｆ") == "abcdef"
    assert normalize_header("(备注)") == "备注"
    assert normalize_header("*") == "*"  # never normalized away to nothing


def test_exact_wins_over_normalized_for_the_same_field_is_ambiguous() -> None:
    err = error_of(["姓名", "NAME "])
    assert err.rule == "mapping.ambiguous"
    assert "姓名" in err.zh and "NAME" in err.en and "null" in err.en


def test_explicit_mapping_first_and_null_skips_a_column() -> None:
    explicit: dict[str, str | None] = {"证件号码": "citizen_id", "XM": "name", "姓名": None, "不存在的列": "mobile"}
    cm = build_column_map(["证件号码", "XM", "姓名", "联系电话"], FIELDS, explicit)
    assert cm.columns == {0: "citizen_id", 1: "name"}
    assert cm.how == {0: "explicit", 1: "explicit"}
    assert cm.ignored == ["姓名"] and cm.unmapped == ["联系电话"] and cm.unused_mapping == ["不存在的列"]


def test_explicit_mapping_keys_match_normalized_headers() -> None:
    cm = build_column_map(["证件号码（必填）", "姓名"], FIELDS, {"证件号码": "citizen_id"})
    assert cm.columns[0] == "citizen_id" and cm.how[0] == "explicit"


def test_explicit_mapping_to_unknown_field() -> None:
    err = error_of(["证件号码", "姓名"], {"证件号码": "id_number"})
    assert err.rule == "mapping.unknown_field" and "id_number" in err.en and "citizen_id" in err.en


def test_explicit_and_automatic_match_on_the_same_field_is_ambiguous() -> None:
    assert error_of(["证件号码", "身份证号", "姓名"], {"证件号码": "citizen_id"}).rule == "mapping.ambiguous"


def test_a_title_shared_by_two_fields_is_ambiguous() -> None:
    fields = [F("home_phone", "电话"), F("work_phone", "电话")]
    err = error_of(["电话"], fields=fields)
    assert err.rule == "mapping.ambiguous" and "home_phone" in err.en and "work_phone" in err.en
    cm = build_column_map(["电话"], fields, {"电话": "work_phone"})
    assert cm.columns == {0: "work_phone"}


def test_missing_required_and_unmapped_are_listed() -> None:
    cm = build_column_map(["姓名", "备注", "手机号码"], FIELDS)
    assert cm.missing_required == ["citizen_id"]
    assert cm.unmapped == ["备注"]
    err = missing_required_error(cm.missing_required, FIELDS)
    assert err.rule == "mapping.missing_required" and "身份证号" in err.zh and "citizen_id" in err.en


def test_load_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"证件号码": "citizen_id", "备注": None}, ensure_ascii=False), encoding="utf-8")
    assert load_mapping_file(path) == {"证件号码": "citizen_id", "备注": None}
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": "name"}).encode())
    assert load_mapping_file(path) == {"a": "name"}


@pytest.mark.parametrize("content", ['{"a": ', '["citizen_id"]', '{"a": 1}', "", '{"a": ["x"]}'])
def test_bad_mapping_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "map.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IngestInputError) as info:
        load_mapping_file(path)
    assert info.value.rule == "mapping.file"


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(IngestInputError) as info:
        load_mapping_file(tmp_path / "nope.json")
    assert info.value.rule == "mapping.file"


def test_mapping_works_with_catalog_models() -> None:
    from onceonly.catalog.models import Field

    fields = [Field(name="uscc", title="统一社会信用代码", type="string", required=True),
              Field(name="org_name", title="单位名称", type="string", required=False)]
    cm = build_column_map(["统一社会信用代码", "单位名称 "], fields)
    assert cm.columns == {0: "uscc", 1: "org_name"} and cm.missing_required == []
