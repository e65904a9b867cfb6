"""National identifiers: citizen ID (GB 11643), USCC (GB 32100), mobile numbers."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from stdnum.cn import ric, uscc

from onceonly.kit.identifiers import (
    IdentifierError,
    citizen_id_birth_date,
    citizen_id_sex,
    make_citizen_id,
    make_uscc,
    normalize_citizen_id,
    normalize_mobile,
    normalize_uscc,
    org_code_check,
    upgrade_citizen_id_15,
)


def with_check(body17: str) -> str:
    return body17 + ric.calc_check_digit(body17 + "0")


def rule_of(func, value: str) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(IdentifierError) as info:
        func(value)
    return info.value.rule


# -- citizen ID ------------------------------------------------------------------------------

def test_valid_citizen_id_round_trips() -> None:
    cid = make_citizen_id("341802", date(1980, 1, 1), 12, male=True)
    assert len(cid) == 18
    assert normalize_citizen_id(cid) == cid
    assert normalize_citizen_id(f"  {cid} ") == cid
    assert citizen_id_birth_date(cid) == date(1980, 1, 1)
    assert citizen_id_sex(cid) == "1"
    assert citizen_id_sex(make_citizen_id("341802", date(1980, 1, 1), 12, male=False)) == "2"


def test_lowercase_x_check_digit_is_normalized() -> None:
    cid = next(c for seq in range(500)
               if (c := make_citizen_id("341802", date(1990, 5, 17), seq, male=seq % 2 == 0)).endswith("X"))
    assert normalize_citizen_id(cid.lower()) == cid


def test_15_digit_id_is_upgraded_to_18() -> None:
    legacy = "341802800101123"  # 1980-01-01, order 123
    upgraded = normalize_citizen_id(legacy)
    assert upgraded == upgrade_citizen_id_15(legacy) == with_check("34180219800101123")
    assert upgraded.startswith("34180219800101123") and len(upgraded) == 18
    assert normalize_citizen_id(upgraded) == upgraded


def test_bad_check_digit() -> None:
    cid = make_citizen_id("341802", date(1980, 1, 1), 12, male=True)
    wrong = cid[:17] + ("0" if cid[17] != "0" else "1")
    assert rule_of(normalize_citizen_id, wrong) == "citizen_id.check_digit"


@pytest.mark.parametrize("birth", ["19490230", "19801301", "19800100", "18000101"])
def test_impossible_birth_date(birth: str) -> None:
    assert rule_of(normalize_citizen_id, with_check(f"341802{birth}123")) == "citizen_id.birth_date"


def test_future_birth_date() -> None:
    future = date.today() + timedelta(days=400)
    assert rule_of(normalize_citizen_id, with_check(f"341802{future:%Y%m%d}123")) == "citizen_id.birth_date"


def test_unknown_region_code() -> None:
    assert rule_of(normalize_citizen_id, with_check("99999919800101123")) == "citizen_id.region"


def test_retired_region_code_is_still_valid() -> None:
    """IDs issued under a division that has since been merged stay valid (崇文区 110103)."""
    cid = with_check("11010319700101123")
    assert normalize_citizen_id(cid) == cid


@pytest.mark.parametrize("value", ["", "3418021980010102", "3418021980010102521", "34180219800101025A",
                                   "A41802198001010252", "34180219800101025 ", "3418028001011"])
def test_wrong_length_or_characters(value: str) -> None:
    assert rule_of(normalize_citizen_id, value) == "citizen_id.format"


def test_error_message_names_rule_in_both_languages() -> None:
    with pytest.raises(IdentifierError) as info:
        normalize_citizen_id("123")
    assert info.value.rule == "citizen_id.format"
    assert "身份证号" in str(info.value) and "18 chars" in str(info.value)


# -- USCC --------------------------------------------------------------------------------------

VALID_USCC = make_uscc("1", "1", "341800", "0030041N")


def test_valid_uscc() -> None:
    assert normalize_uscc(VALID_USCC) == VALID_USCC
    assert normalize_uscc(f" {VALID_USCC.lower()} ") == VALID_USCC


def test_uscc_with_letter_registration_code_is_valid() -> None:
    """GB 32100 allows letters in positions 1-2 (e.g. N2 农村集体经济组织)."""
    body = "N2341800" + "0030041N" + org_code_check("0030041N")
    code = body + uscc.calc_check_digit(body)
    assert normalize_uscc(code) == code


def test_uscc_wrong_check_character() -> None:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    wrong = VALID_USCC[:17] + next(c for c in alphabet if c != VALID_USCC[17])
    assert rule_of(normalize_uscc, wrong) == "uscc.check_digit"


def test_uscc_embedded_organization_code_wrong() -> None:
    """The overall check char is right but the GB 11714 org code inside fails its own check."""
    org9 = "0030041N" + ("0" if org_code_check("0030041N") != "0" else "1")
    body = "11341800" + org9
    code = body + uscc.calc_check_digit(body)
    assert rule_of(normalize_uscc, code) == "uscc.organization_code"


@pytest.mark.parametrize("letter", list("IOZSV"))
def test_uscc_forbidden_letters(letter: str) -> None:
    assert rule_of(normalize_uscc, VALID_USCC[:10] + letter + VALID_USCC[11:]) == "uscc.format"


@pytest.mark.parametrize("value", ["", VALID_USCC[:17], VALID_USCC + "0", "11A418000030041N15", "中文"])
def test_uscc_wrong_format(value: str) -> None:
    assert rule_of(normalize_uscc, value) == "uscc.format"


def test_org_code_check_known_value() -> None:
    # GB 11714 example from the standard's appendix: D2143569-X
    assert org_code_check("D2143569") == "X"


# -- mobile ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["13800138000", " 138 0013 8000 ", "+86 138-0013-8000", "+8613800138000"])
def test_mobile_normalized(value: str) -> None:
    assert normalize_mobile(value) == "13800138000"


@pytest.mark.parametrize("value", ["12800138000", "1380013800", "138001380000", "2380013800a", "", "+1 3800138000"])
def test_mobile_invalid(value: str) -> None:
    assert rule_of(normalize_mobile, value) == "mobile.format"


def test_the_gb11643_sample_id_is_valid() -> None:
    """The standard's own example: a check digit computed over the wrong digits would refuse it."""
    assert normalize_citizen_id("11010519491231002x") == "11010519491231002X"
    with pytest.raises(IdentifierError) as info:
        normalize_citizen_id("110105194912310021")
    assert info.value.rule == "citizen_id.check_digit"
