"""Row validation: every rule of onceonly.ingest.checks, cross-field rules and batch keys."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest

from onceonly.ingest.checks import BatchKeys, RowChecker, compile_field, compile_row_checker
from onceonly.ingest.coerce import CoercionError
from onceonly.ingest.types import BadRow, IngestInputError, Problem
from onceonly.kit.identifiers import make_citizen_id, make_uscc, normalize_mobile


@dataclass
class F:
    name: str
    title: str = ""
    type: str = "string"
    length: int | None = None
    required: bool = False
    unique: bool = False
    check: str | None = None
    code_list: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)


CID_M = make_citizen_id("110105", date(1980, 5, 6), 12, male=True)
CID_F = make_citizen_id("110105", date(1990, 1, 2), 7, male=False)
SEX = {"0", "1", "2", "9"}
ETHNIC = {f"{i:02d}" for i in range(1, 57)}

PERSON = [
    F("citizen_id", "身份证号", length=18, required=True, check="citizen_id"),
    F("name", "姓名", length=4, required=True),
    F("sex", "性别", code_list="GB/T 2261.1", required=True),
    F("birth_date", "出生日期", "date"),
    F("ethnicity", "民族", code_list="GB 3304"),
    F("mobile", "手机号", check="mobile"),
    F("age", "年龄", "integer", constraints={"minimum": 0, "maximum": 150}),
    F("status", "状态", constraints={"enum": ["在册", "迁出"]}),
]
CODES = {"sex": SEX, "ethnicity": ETHNIC}
AGREES = [{"rule": "citizen_id_agrees", "citizen_id": "citizen_id", "sex": "sex", "birth_date": "birth_date"}]


def person_checker(**kw: Any) -> RowChecker:
    kw.setdefault("code_sets", CODES)
    kw.setdefault("cross_rules", AGREES)
    kw.setdefault("key_fields", ["citizen_id"])
    return RowChecker(PERSON, **kw)


def row(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"citizen_id": CID_M, "name": "张三", "sex": "1", "birth_date": "1980-05-06",
                            "ethnicity": "01", "mobile": "13812345678", "age": "44", "status": "在册"}
    base.update(over)
    return base


def rules(problems: list[Problem]) -> list[tuple[str, str]]:
    return [(p.field, p.rule) for p in problems]


def single(fld: F, value: Any, **kw: Any) -> Any:
    return compile_field(fld, **kw)(value)


def rule_of(fld: F, value: Any, **kw: Any) -> str:
    with pytest.raises(CoercionError) as info:
        single(fld, value, **kw)
    return info.value.rule


# -- a valid row -----------------------------------------------------------------------------

def test_valid_row_is_typed_and_normalized() -> None:
    out, problems = person_checker().check(row(citizen_id=CID_M.lower(), mobile="+86 138-1234-5678", ethnicity="1"))
    assert problems == []
    assert out == {"citizen_id": CID_M, "name": "张三", "sex": "1", "birth_date": date(1980, 5, 6),
                   "ethnicity": "01", "mobile": "13812345678", "age": 44, "status": "在册"}


# -- single-field rules ----------------------------------------------------------------------

def test_required() -> None:
    fld = F("name", "姓名", required=True)
    for empty in ("", "  ", "\u3000", None):
        assert rule_of(fld, empty) == "required"
    with pytest.raises(CoercionError) as info:
        single(fld, "")
    assert "姓名" in info.value.zh and "name" in info.value.en
    assert single(F("note"), "") is None


def test_length_counts_characters_not_bytes() -> None:
    fld = F("name", length=4)
    assert single(fld, "欧阳娜娜") == "欧阳娜娜"
    assert rule_of(fld, "欧阳娜娜娜") == "length.max"


def test_enum_uses_typed_values() -> None:
    assert rule_of(F("status", constraints={"enum": ["在册", "迁出"]}), "死亡") == "enum.unknown"
    fld = F("level", type="integer", constraints={"enum": [1, "2"]})
    assert single(fld, "2") == 2 and single(fld, 1.0) == 1
    assert rule_of(fld, "3") == "enum.unknown"


def test_minimum_and_maximum() -> None:
    age = F("age", type="integer", constraints={"minimum": 0, "maximum": 150})
    assert single(age, "150") == 150
    assert rule_of(age, "-1") == "value.minimum"
    assert rule_of(age, "151") == "value.maximum"
    when = F("when", type="date", constraints={"minimum": "2000-01-01"})
    assert rule_of(when, "1999/12/31") == "value.minimum"
    assert single(when, "2000年1月1日") == date(2000, 1, 1)


def test_pattern_is_a_full_match() -> None:
    fld = F("household_no", constraints={"pattern": r"H\d{8}"})
    assert single(fld, "H00000001") == "H00000001"
    assert rule_of(fld, "H00000001x") == "pattern.mismatch"


def test_type_errors_come_from_coercion() -> None:
    assert rule_of(F("d", type="date"), "2018-02-30") == "date.invalid"
    assert rule_of(F("n", type="integer"), "1.5") == "integer.fraction"
    assert rule_of(F("b", type="boolean"), "maybe") == "boolean.format"


def test_code_list_with_local_mapping_and_lost_leading_zeros() -> None:
    sex = F("sex", code_list="GB/T 2261.1")
    assert single(sex, "2", code_set=SEX) == "2"
    assert rule_of(sex, "男", code_set=SEX) == "code_list.unknown"
    local = {"男": "1", "女": "2", "1": "2"}  # a department whose own "1" means female
    assert single(sex, "男", code_set=SEX, local_map=local) == "1"
    assert single(sex, "1", code_set=SEX, local_map=local) == "2"  # the mapping wins over a same-looking code
    eth = F("ethnicity", code_list="GB 3304")
    assert single(eth, 1.0, code_set=ETHNIC) == "01"  # Excel turned 01 into the number 1
    assert single(eth, "1", code_set=ETHNIC) == "01"
    assert rule_of(eth, "57", code_set=ETHNIC) == "code_list.unknown"
    with pytest.raises(CoercionError) as info:
        single(eth, "99", code_set=ETHNIC)
    assert "GB 3304" in info.value.zh and "99" in info.value.en


def test_code_list_on_an_integer_field() -> None:
    fld = F("grade", type="integer", code_list="grades")
    assert single(fld, "2", code_set={"1", "2"}) == 2
    assert rule_of(fld, "3", code_set={"1", "2"}) == "code_list.unknown"


# -- built-in identifier checks --------------------------------------------------------------

CID = F("citizen_id", check="citizen_id")


def test_citizen_id_normalization() -> None:
    x_id = next(c for seq in range(500) if (c := make_citizen_id("110105", date(1985, 3, 4), seq, True)).endswith("X"))
    assert single(CID, x_id.lower()) == x_id
    assert single(CID, f" {CID_M}\u3000") == CID_M
    legacy = "110105800506123"
    upgraded = single(CID, legacy)
    assert len(upgraded) == 18 and upgraded.startswith("11010519800506123")


@pytest.mark.parametrize(("value", "rule"), [
    ("1101051980050612", "citizen_id.format"),
    ("11010519800230123X", "citizen_id.birth_date"),
    (CID_M[:17] + ("0" if CID_M[17] != "0" else "1"), "citizen_id.check_digit"),
    (make_citizen_id("990105", date(1980, 5, 6), 1, True), "citizen_id.region"),
])
def test_citizen_id_rules(value: str, rule: str) -> None:
    assert rule_of(CID, value) == rule


def test_citizen_id_message_quotes_the_value() -> None:
    with pytest.raises(CoercionError) as info:
        single(CID, "12345")
    assert "12345" in info.value.zh and "12345" in info.value.en


def test_citizen_id_accepts_the_gb11643_sample() -> None:
    assert single(CID, "11010519491231002x") == "11010519491231002X"


def test_uscc() -> None:
    fld = F("uscc", check="uscc")
    code = make_uscc("9", "1", "110105", "MA01ABCD")
    assert single(fld, code.lower()) == code
    assert single(fld, "91110000600037341l") == "91110000600037341L"
    assert rule_of(fld, "91110000600037341") == "uscc.format"
    assert rule_of(fld, "91110000600037341O") == "uscc.format"
    assert rule_of(fld, "91110000600037341A") == "uscc.check_digit"
    bad_org = "911100006000373" + "5" + "1"  # wrong GB 11714 check character inside
    from stdnum.cn import uscc as std_uscc

    bad_org += std_uscc.calc_check_digit(bad_org)
    assert rule_of(fld, bad_org) == "uscc.organization_code"


def test_mobile_fast_path_agrees_with_the_kit() -> None:
    fld = F("mobile", check="mobile")
    rng = random.Random(7)
    samples = ["13812345678", "12812345678", "1381234567", "138123456789", "+8613812345678", "138 1234 5678",
               "１３８１２３４５６７８", "23812345678", "19912345678", "10012345678"]
    samples += [f"1{rng.randrange(10**10):010d}" for _ in range(300)]
    for value in samples:
        try:
            expected: str | None = normalize_mobile(value)
        except ValueError:
            expected = None
        if expected is None:
            assert rule_of(fld, value) == "mobile.format", value
        else:
            assert single(fld, value) == expected


# -- whole rows ------------------------------------------------------------------------------

def test_all_problems_of_a_row_are_reported() -> None:
    out, problems = person_checker().check(row(citizen_id="123", name="", sex="5", birth_date="昨天", ethnicity="99",
                                               mobile="12", age="-3", status="?"))
    assert out is None
    assert rules(problems) == [("citizen_id", "citizen_id.format"), ("name", "required"), ("sex", "code_list.unknown"),
                               ("birth_date", "date.format"), ("ethnicity", "code_list.unknown"),
                               ("mobile", "mobile.format"), ("age", "value.minimum"), ("status", "enum.unknown")]
    assert all(p.zh and p.en for p in problems)


def test_check_by_name_reports_absent_required_fields() -> None:
    out, problems = person_checker().check({"name": "张三"})
    assert out is None
    assert ("citizen_id", "required") in rules(problems) and ("sex", "required") in rules(problems)
    out, problems = person_checker().check({"citizen_id": CID_M, "name": "张三", "sex": "1"})
    assert problems == [] and out == {"citizen_id": CID_M, "name": "张三", "sex": "1"}


# -- cross-field rules -----------------------------------------------------------------------

def test_sex_must_agree_with_the_citizen_id() -> None:
    out, problems = person_checker().check(row(sex="2"))
    assert out is None and rules(problems) == [("sex", "cross.citizen_id_sex")]
    assert "citizen_id" in problems[0].en and "身份证号" in problems[0].zh
    assert person_checker().check(row(citizen_id=CID_F, sex="2", birth_date="1990-01-02"))[1] == []
    assert person_checker().check(row(sex="9"))[1] == []  # 9 = not stated: nothing to compare


def test_sex_agreement_after_local_mapping_and_with_words() -> None:
    checker = person_checker(local_mappings={"sex": {"M": "1", "F": "2"}})
    assert checker.check(row(sex="M"))[1] == []
    assert rules(checker.check(row(citizen_id=CID_M, sex="F"))[1]) == [("sex", "cross.citizen_id_sex")]
    words = RowChecker([F("cid", check="citizen_id"), F("xb")],
                       cross_rules=[{"rule": "citizen_id_agrees", "citizen_id": "cid", "sex": "xb"}])
    assert words.check({"cid": CID_M, "xb": "男"})[1] == []
    assert rules(words.check({"cid": CID_M, "xb": "女"})[1]) == [("xb", "cross.citizen_id_sex")]


def test_birth_date_must_agree_with_the_citizen_id() -> None:
    _out, problems = person_checker().check(row(birth_date="1980-05-07"))
    assert rules(problems) == [("birth_date", "cross.citizen_id_birth_date")]
    assert "1980-05-06" in problems[0].en
    assert person_checker().check(row(birth_date="1980年5月6日"))[1] == []
    assert person_checker().check(row(birth_date=""))[1] == []  # empty optional date: nothing to compare


def test_cross_rules_skip_fields_that_already_failed() -> None:
    _out, problems = person_checker().check(row(citizen_id="bad", sex="2"))
    assert rules(problems) == [("citizen_id", "citizen_id.format")]


def test_not_before() -> None:
    checker = RowChecker([F("start", type="date"), F("end", type="date")],
                         cross_rules=[{"rule": "not_before", "field": "end", "other": "start"}])
    assert checker.check({"start": "2020-01-01", "end": "2020-01-01"})[1] == []
    assert rules(checker.check({"start": "2020-01-02", "end": "2020-01-01"})[1]) == [("end", "cross.not_before")]
    assert checker.check({"start": "2020-01-02", "end": ""})[1] == []


# -- batch keys ------------------------------------------------------------------------------

def test_batch_keys() -> None:
    keys = BatchKeys(["a"], text_only=True)
    assert keys.add(("x",)) and not keys.add(("x",)) and keys.add(("y",))
    mixed = BatchKeys(["a", "b"])
    assert mixed.add(("x", 1)) and mixed.add(("x", 2)) and not mixed.add(("x", 1))
    assert mixed.add((-1,)) and mixed.add((-2,))  # hash(-1) == hash(-2) in Python; digests differ
    assert len(mixed) == 4


def test_duplicate_key_keeps_the_first_row() -> None:
    checker = person_checker()
    assert checker.check(row())[1] == []
    out, problems = checker.check(row(name="李四"))
    assert out is None and rules(problems) == [("citizen_id", "key.duplicate")]
    assert "earlier row" in problems[0].en and "重复" in problems[0].zh
    # the key is compared after normalization: a lowercase or legacy spelling is the same person
    assert rules(checker.check(row(citizen_id=CID_M.lower()))[1]) == [("citizen_id", "key.duplicate")]


def test_a_rejected_row_does_not_claim_its_key() -> None:
    checker = person_checker()
    assert rules(checker.check(row(age="-1"))[1]) == [("age", "value.minimum")]
    assert checker.check(row())[1] == []


def test_composite_keys_and_unique_fields() -> None:
    fields = [F("org", required=True), F("no", type="integer", required=True), F("email", unique=True)]
    checker = RowChecker(fields, key_fields=["org", "no"])
    assert checker.check({"org": "A", "no": "1", "email": "a@x.cn"})[1] == []
    assert checker.check({"org": "A", "no": "2", "email": ""})[1] == []
    assert checker.check({"org": "B", "no": "1", "email": ""})[1] == []  # empty values never collide
    assert rules(checker.check({"org": "A", "no": "1.0", "email": "b@x.cn"})[1]) == [("org", "key.duplicate")]
    assert rules(checker.check({"org": "C", "no": "1", "email": "a@x.cn"})[1]) == [("email", "unique.duplicate")]
    assert checker.check({"org": "C", "no": "1", "email": "c@x.cn"})[1] == []  # C/1 was not claimed above


# -- rows from a Source ----------------------------------------------------------------------

HEADER = ["身份证号", "姓名", "性别", "出生日期", "备注"]
COLUMNS = {0: "citizen_id", 1: "name", 2: "sex", 3: "birth_date"}


def source_checker() -> RowChecker:
    return person_checker(columns=COLUMNS, width=len(HEADER))


def test_check_row_maps_columns() -> None:
    out, problems = source_checker().check_row([CID_M, "张三", "1", "1980-05-06", "x"])
    assert problems == [] and out == {"citizen_id": CID_M, "name": "张三", "sex": "1", "birth_date": date(1980, 5, 6)}


def test_check_row_reports_ragged_rows() -> None:
    checker = source_checker()
    out, problems = checker.check_row([CID_M, "张三"])
    assert out is None and rules(problems) == [("*", "row.ragged")]
    bad = BadRow([CID_M, "张三", "1", "1980-05-06", "x", "y"],
                 [Problem("*", "row.ragged", "本行有6个单元格，表头有5列", "6 cells, 5 columns")])
    assert rules(checker.check_row(bad)[1]) == [("*", "row.ragged")]


def test_check_row_aligned_bad_row_reports_reading_and_cell_problems() -> None:
    bad = BadRow([CID_M, "", "1", "1980-05-06", None], [Problem("*", "row.extra_keys", "多余的键", "extra keys")],
                 aligned=True)
    out, problems = source_checker().check_row(bad)
    assert out is None and rules(problems) == [("*", "row.extra_keys"), ("name", "required")]
    good_cells = BadRow([CID_F, "李四", "2", "1990-01-02", None], [Problem("*", "row.extra_keys", "z", "z")],
                        aligned=True)
    assert rules(source_checker().check_row(good_cells)[1]) == [("*", "row.extra_keys")]


def test_check_row_handles_excel_values() -> None:
    checker = RowChecker([F("mobile", check="mobile"), F("d", type="date"), F("n", type="integer"),
                          F("cid", check="citizen_id")], columns={0: "mobile", 1: "d", 2: "n", 3: "cid"}, width=4)
    out, problems = checker.check_row([13812345678.0, 43332.0, 3.0, 3.4180219900101126e17])
    assert out is None and rules(problems) == [("cid", "string.precision")]
    out, problems = checker.check_row([13812345678.0, 43332.0, 3.0, CID_M])
    assert problems == [] and out == {"mobile": "13812345678", "d": date(2018, 8, 20), "n": 3, "cid": CID_M}
    assert rules(checker.check_row(["1", "", "", "3.41802E+17"])[1]) == [("mobile", "mobile.format"),
                                                                         ("cid", "string.scientific")]


def test_check_row_and_check_agree_on_random_rows() -> None:
    rng = random.Random(11)
    cells: dict[str, list[Any]] = {
        "citizen_id": [CID_M, CID_F, CID_M.lower(), "123", "", "110105800506123", " " + CID_F],
        "name": ["张三", "", "欧阳娜娜娜", "\u3000李四\u200b", 12.0],
        "sex": ["1", "2", "9", "5", "", 1.0, "M"],
        "birth_date": ["1980-05-06", "1990-01-02", "1980/5/6", "x", "", 29347, "1980-02-30"],
        "ethnicity": ["01", "1", 1.0, "99", ""],
        "mobile": ["13812345678", "+86 13812345678", "12", "", 13812345678.0],
        "age": ["1", "1,000", "-1", "x", "", 30.0, "１２"],
        "status": ["在册", "迁出", "死亡", ""],
    }
    names = list(cells)
    columns = dict(enumerate(names))
    by_row = person_checker(columns=columns, width=len(names), local_mappings={"sex": {"M": "1"}})
    by_name = person_checker(local_mappings={"sex": {"M": "1"}})
    for _ in range(3000):
        values = [rng.choice(cells[n]) for n in names]
        assert by_row.check_row(values) == by_name.check(dict(zip(names, values, strict=True))), values


def test_catalog_strings_never_become_code() -> None:
    odd = F('a"b\n\'c', "标题\"'\n", length=3, required=True, constraints={"enum": ["x\"'", "ok"]})
    checker = RowChecker([odd], columns={0: odd.name}, width=1)
    assert checker.check_row(["ok"]) == ({odd.name: "ok"}, [])
    assert rules(checker.check_row(["no"])[1]) == [(odd.name, "enum.unknown")]


def test_works_with_catalog_field_models() -> None:
    from onceonly.catalog.models import Field

    fields = [Field(name="uscc", title="统一社会信用代码", type="string", length=18, required=True, check="uscc"),
              Field(name="founded", title="成立日期", type="date", required=False)]
    checker = compile_row_checker(fields, key_fields=["uscc"], columns={0: "uscc", 1: "founded"}, width=2)
    assert checker.check_row(["91110000600037341l", "2001年2月3日"]) == (
        {"uscc": "91110000600037341L", "founded": date(2001, 2, 3)}, [])


# -- catalog mistakes are clear errors, not tracebacks ---------------------------------------

@pytest.mark.parametrize(("fields", "kw"), [
    ([F("a", type="blob")], {}),
    ([F("a", check="passport")], {}),
    ([F("a", type="integer", check="mobile")], {}),
    ([F("a", code_list="GB 3304")], {}),
    ([F("a", constraints={"pattern": "("})], {}),
    ([F("a", type="integer", constraints={"enum": ["x"]})], {}),
    ([F("a")], {"cross_rules": [{"rule": "magic"}]}),
    ([F("a")], {"cross_rules": [{"rule": "citizen_id_agrees", "citizen_id": "a", "sex": "nope"}]}),
    ([F("a")], {"key_fields": ["b"]}),
    ([F("a")], {"columns": {0: "b"}}),
])
def test_catalog_errors(fields: list[F], kw: dict[str, Any]) -> None:
    with pytest.raises(IngestInputError) as info:
        RowChecker(fields, **kw)
    assert info.value.rule == "catalog.invalid"
