"""Encoding detection on real bytes: UTF-8 (with and without BOM), GB18030/GBK, binary, mixed."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from onceonly.ingest.encoding import SAMPLE_SIZE, detect_encoding, resolve_encoding
from onceonly.ingest.readers import open_source
from onceonly.ingest.types import IngestInputError

PEOPLE = ("姓名,身份证号,住址\n张三,110105194912310021,北京市朝阳区建国路88号\n"
          "李四,110105195001010014,上海市浦东新区世纪大道\n")


def error_of(path: Path, **kw: str) -> IngestInputError:
    with pytest.raises(IngestInputError) as info, open_source(path, **kw) as src:
        list(src.rows)
    return info.value


def test_plain_utf8_and_ascii_are_confident() -> None:
    assert detect_encoding(PEOPLE.encode("utf-8")) == ("utf-8", True)
    assert detect_encoding(b"name,id\nx,1\n") == ("utf-8", True)


def test_utf8_bom() -> None:
    assert detect_encoding(codecs.BOM_UTF8 + PEOPLE.encode()) == ("utf-8-sig", True)


def test_utf16_bom_from_excel_unicode_text() -> None:
    assert detect_encoding(PEOPLE.encode("utf-16")) == ("utf-16", True)


def test_multibyte_character_cut_by_the_sample_end_is_still_utf8() -> None:
    data = PEOPLE.encode()
    cut = data[: data.index("张".encode()) + 1]  # one byte of a three-byte character
    assert detect_encoding(cut) == ("utf-8", True)


@pytest.mark.parametrize("codec", ["gb18030", "gbk", "gb2312"])
def test_gb_family_is_detected_confidently(codec: str) -> None:
    assert detect_encoding(PEOPLE.encode(codec)) == ("gb18030", True)


def test_gbk_names_with_a_few_rare_characters_stay_confident() -> None:
    names = ["王喆", "李堃", "张昇", "赵敏", "钱多多", "孙丽", "周杰", "吴芳", "郑强", "冯勇"]
    rows = "".join(f"{n},北京市朝阳区建国路{i}号\n" for i, n in enumerate(names * 3))
    assert detect_encoding(("姓名,住址\n" + rows).encode("gbk")) == ("gb18030", True)


def test_big5_and_latin1_are_not_confident() -> None:
    assert detect_encoding("姓名,身份證號\n張三,臺北市中正區\n".encode("big5"))[1] is False
    assert detect_encoding("name,city\nJosé,Zürich,Ærøskøbing,Señora\n".encode("latin-1"))[1] is False


@pytest.mark.parametrize("data", [b"\x00\x01\x02\x03" * 50, b"abc\x00def", bytes(range(256)) * 4])
def test_binary_is_rejected(data: bytes) -> None:
    with pytest.raises(IngestInputError) as info:
        detect_encoding(data)
    assert info.value.rule == "file.binary"


def test_binary_message_recognizes_a_workbook() -> None:
    with pytest.raises(IngestInputError) as info:
        detect_encoding(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(200))
    assert "xlsx" in info.value.en and "xlsx" in info.value.zh


def test_resolve_encoding_names() -> None:
    assert resolve_encoding("GBK") == "gb18030"
    assert resolve_encoding("gb2312") == "gb18030"
    assert resolve_encoding("GB18030") == "gb18030"
    assert resolve_encoding("utf8") == "utf-8-sig"
    assert resolve_encoding("UTF-8") == "utf-8-sig"
    assert resolve_encoding("big5") == "big5"
    with pytest.raises(IngestInputError) as info:
        resolve_encoding("klingon-8")
    assert info.value.rule == "encoding.unknown"


# -- through the reader ----------------------------------------------------------------------

def test_reader_decodes_gb18030_file(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(PEOPLE.encode("gb18030"))
    with open_source(path) as src:
        assert src.encoding == "gb18030"
        assert src.header == ["姓名", "身份证号", "住址"]
        assert next(r for _, r in src.rows) == ["张三", "110105194912310021", "北京市朝阳区建国路88号"]


def test_reader_strips_the_bom_from_the_first_header(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(codecs.BOM_UTF8 + PEOPLE.encode())
    with open_source(path) as src:
        assert src.header[0] == "姓名" and src.encoding == "utf-8-sig"


def test_uncertain_encoding_asks_for_encoding(tmp_path: Path) -> None:
    path = tmp_path / "tw.csv"
    path.write_bytes("姓名,身份證號\n張三,臺北市中正區\n".encode("big5"))
    err = error_of(path)
    assert err.rule == "encoding.uncertain" and "--encoding" in err.en and "--encoding" in err.zh
    with open_source(path, encoding="big5") as src:
        assert src.header == ["姓名", "身份證號"]


def test_mixed_encodings_fail_the_whole_file_naming_the_row(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    head = "姓名,住址\n".encode()
    line = "张三,北京市朝阳区建国路88号\n".encode()
    n_utf8 = (100 * 1024) // len(line) + 1  # more than the 64 KB sample, so detection says UTF-8
    path.write_bytes(head + line * n_utf8 + "李四,上海市浦东新区\n".encode("gb18030") + line)
    assert n_utf8 * len(line) > SAMPLE_SIZE
    err = error_of(path)
    assert err.rule == "encoding.mixed"
    assert err.row == n_utf8 + 2  # header is row 1, the GB18030 line comes right after the UTF-8 ones
    assert str(err.row) in err.zh and str(err.row) in err.en


def test_wrong_explicit_encoding_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "gb.csv"
    path.write_bytes(PEOPLE.encode("gb18030"))
    err = error_of(path, encoding="utf-8")
    assert err.rule == "encoding.invalid" and err.row == 1


def test_mixed_encodings_in_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    good = '{"姓名": "张三", "住址": "北京市朝阳区建国路88号"}\n'.encode()
    n = (80 * 1024) // len(good) + 1
    path.write_bytes(good * n + '{"姓名": "李四"}\n'.encode("gbk"))
    err = error_of(path)
    assert err.rule == "encoding.mixed" and err.row == n + 1


def test_binary_file_named_csv(tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    assert error_of(path).rule == "file.binary"
