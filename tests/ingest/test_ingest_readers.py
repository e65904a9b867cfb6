"""Readers: CSV/TSV, XLSX/XLS (python-calamine), JSON Lines and JSON arrays, and their bad inputs."""

from __future__ import annotations

import json
import tracemalloc
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlwt

from onceonly.ingest import readers
from onceonly.ingest.readers import column_letter, open_source, sniff_delimiter
from onceonly.ingest.types import BadRow, IngestInputError


def read_all(path: Path, **kw: Any) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    with open_source(path, **kw) as src:
        return src.header, list(src.rows)


def error_of(path: Path, **kw: Any) -> IngestInputError:
    with pytest.raises(IngestInputError) as info:
        read_all(path, **kw)
    return info.value


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def xlsx(tmp_path: Path, rows: list[list[Any]], name: str = "t.xlsx", title: str = "人员",
         setup: Any = None) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = title
    for row in rows:
        ws.append(row)
    if setup is not None:
        setup(wb, ws)
    path = tmp_path / name
    wb.save(path)
    return path


# -- CSV -------------------------------------------------------------------------------------

def test_csv_header_rows_and_row_numbers(tmp_path: Path) -> None:
    text = " 姓名 ,身份证号\u3000,备注\n张三,110105194912310021,\n\n李四,110105195001010014,x\n,,\n"
    path = write(tmp_path, "p.csv", text)
    header, rows = read_all(path)
    assert header == ["姓名", "身份证号", "备注"]
    assert rows == [(2, ["张三", "110105194912310021", ""]), (4, ["李四", "110105195001010014", "x"])]


def test_csv_leading_blank_lines_count_as_rows(tmp_path: Path) -> None:
    header, rows = read_all(write(tmp_path, "p.csv", "\n\na,b\n1,2\n"))
    assert header == ["a", "b"] and rows == [(4, ["1", "2"])]


def test_quoted_cells_with_delimiters_and_newlines(tmp_path: Path) -> None:
    _header, rows = read_all(write(tmp_path, "p.csv", 'a,b\n"x, y","line1\nline2"\n3,4\n'))
    assert rows == [(2, ["x, y", "line1\nline2"]), (3, ["3", "4"])]


@pytest.mark.parametrize(("sep", "suffix"), [("\t", ".tsv"), ("\t", ".txt"), (";", ".csv"), ("|", ".csv"),
                                             (",", ".txt")])
def test_delimiters(tmp_path: Path, sep: str, suffix: str) -> None:
    city = '"北京,朝阳"' if sep == "," else "北京,朝阳"
    path = write(tmp_path, "p" + suffix, f"姓名{sep}年龄{sep}城市\n张三{sep}3{sep}{city}\n")
    with open_source(path) as src:
        assert src.header == ["姓名", "年龄", "城市"]
        assert list(src.rows) == [(2, ["张三", "3", "北京,朝阳"])]
        assert src.info["delimiter"] == sep


def test_sniff_delimiter_prefers_the_most_cells_and_comma_on_ties() -> None:
    assert sniff_delimiter("a;b;c,d") == ";"
    assert sniff_delimiter("single") == ","
    assert sniff_delimiter('"a;b",c') == ","


def test_ragged_rows_are_rejected_one_by_one(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", "a,b,c\n1,2,3\n1,2\n1,2,3,4\n1,2,3,,\n5,6,7\n")
    _header, rows = read_all(path)
    assert [n for n, _ in rows] == [2, 3, 4, 5, 6]
    short, long_ = rows[1][1], rows[2][1]
    assert isinstance(short, BadRow) and short.problems[0].rule == "row.ragged" and short.problems[0].field == "*"
    assert isinstance(long_, BadRow) and "4" in long_.problems[0].en and not long_.aligned
    assert rows[3] == (5, ["1", "2", "3"])  # trailing empty cells are not ragged
    assert not isinstance(rows[3][1], BadRow)


def test_trailing_empty_header_cells_are_dropped(tmp_path: Path) -> None:
    header, rows = read_all(write(tmp_path, "p.csv", "a,b,,\n1,2,,\n"))
    assert header == ["a", "b"] and rows == [(2, ["1", "2"])]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    assert read_all(write(tmp_path, "p.csv", "姓名,身份证号\n")) == (["姓名", "身份证号"], [])


@pytest.mark.parametrize("text", ["", "\n\n", "  \n\t\n", ",,,\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert error_of(write(tmp_path, "p.csv", text)).rule == "file.empty"


def test_duplicate_headers_name_both_columns(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "p.csv", "姓名,年龄,姓名 \n"))
    assert err.rule == "header.duplicate" and err.row == 1
    assert "A" in err.en and "C" in err.en and "#1" in err.en and "#3" in err.en and "姓名" in err.zh


def test_empty_header_cell_names_the_column(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "p.csv", "姓名,,年龄\n"))
    assert err.rule == "header.empty" and "column B" in err.en and "B 列" in err.zh


def test_unterminated_quote_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import csv

    limit = csv.field_size_limit()
    monkeypatch.setattr(readers, "MAX_FIELD_CHARS", 1000)
    try:
        csv.field_size_limit(1000)
        err = error_of(write(tmp_path, "p.csv", 'a,b\n1,"oops\n' + "x,y\n" * 600))
    finally:
        csv.field_size_limit(limit)
    assert err.rule == "csv.malformed" and err.row == 2 and "quote" in err.en


def test_format_from_suffix_or_option(tmp_path: Path) -> None:
    path = write(tmp_path, "export.dat", "a,b\n1,2\n")
    assert error_of(path).rule == "file.format"
    assert read_all(path, fmt="csv")[1] == [(2, ["1", "2"])]
    assert error_of(path, fmt="parquet").rule == "file.format"


def test_missing_file_or_directory_is_a_clear_error(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.csv").rule == "file.unreadable"
    (tmp_path / "dir.csv").mkdir()
    assert error_of(tmp_path / "dir.csv").rule == "file.unreadable"


def test_csv_streams_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    line = "张三丰,110105194912310021,北京市朝阳区建国路88号院" + "某" * 200 + ",13812345678\n"
    with path.open("w", encoding="utf-8") as f:
        f.write("姓名,身份证号,住址,手机\n")
        for _ in range(40_000):
            f.write(line)
    size = path.stat().st_size
    assert size > 20 * 1024 * 1024
    tracemalloc.start()
    try:
        with open_source(path) as src:
            count = sum(1 for _ in src.rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 40_000
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes for a {size}-byte file"


def test_source_closes_its_file(tmp_path: Path) -> None:
    src = open_source(write(tmp_path, "p.csv", "a\n1\n2\n"))
    rows = iter(src.rows)
    next(rows)
    src.close()
    with pytest.raises(ValueError):
        next(rows)


def test_column_letters() -> None:
    assert [column_letter(i) for i in (0, 25, 26, 51, 701, 702)] == ["A", "Z", "AA", "AZ", "ZZ", "AAA"]


# -- XLSX ------------------------------------------------------------------------------------

def test_xlsx_values_keep_their_types(tmp_path: Path) -> None:
    path = xlsx(tmp_path, [["姓名", "身份证号", "出生日期", "年龄", "在职"],
                           ["张三", "110105194912310021", date(1949, 12, 31), 75, True],
                           [None, None, None, None, None],
                           ["李四", "110105195001010014", datetime(1950, 1, 1, 8, 30), 74.5, False]])
    with open_source(path) as src:
        assert src.format == "xlsx" and src.sheet == "人员" and src.encoding is None
        assert src.header == ["姓名", "身份证号", "出生日期", "年龄", "在职"]
        rows = list(src.rows)
    assert [n for n, _ in rows] == [2, 4]
    first = rows[0][1]
    assert first[:2] == ["张三", "110105194912310021"]
    assert first[2] in (date(1949, 12, 31), datetime(1949, 12, 31))
    assert first[3] == 75 and first[4] is True
    assert rows[1][1][3] == 74.5


def test_xlsx_sheet_by_name_and_unknown_sheet(tmp_path: Path) -> None:
    def more(wb: Any, ws: Any) -> None:
        other = wb.create_sheet("企业")
        other.append(["统一社会信用代码"])
        other.append(["91110000600037341L"])

    path = xlsx(tmp_path, [["姓名"], ["张三"]], setup=more)
    assert read_all(path, sheet="企业") == (["统一社会信用代码"], [(2, ["91110000600037341L"])])
    assert read_all(path)[0] == ["姓名"]  # the first sheet by default
    err = error_of(path, sheet="法人")
    assert err.rule == "sheet.unknown" and "人员" in err.zh and "企业" in err.en


def test_xlsx_hidden_first_sheet_is_skipped_by_default(tmp_path: Path) -> None:
    def hide(wb: Any, ws: Any) -> None:
        ws.sheet_state = "hidden"
        visible = wb.create_sheet("可见")
        visible.append(["a"])

    path = xlsx(tmp_path, [["secret"]], setup=hide)
    assert read_all(path)[0] == ["a"]


def test_xlsx_merged_header_cells(tmp_path: Path) -> None:
    def merge(wb: Any, ws: Any) -> None:
        ws.merge_cells("A1:B1")

    path = xlsx(tmp_path, [["基本信息", None, "备注"], ["张三", "男", "x"]], setup=merge)
    err = error_of(path)
    assert err.rule == "header.empty" and "merged" in err.en and "合并" in err.zh and "column B" in err.en


def test_xlsx_title_row_above_the_header(tmp_path: Path) -> None:
    def merge(wb: Any, ws: Any) -> None:
        ws.merge_cells("A1:C1")

    path = xlsx(tmp_path, [["2024年人员信息登记表", None, None], ["姓名", "性别", "备注"]], setup=merge)
    err = error_of(path)
    assert err.rule == "header.empty" and "title" in err.en and "标题" in err.zh


def test_xlsx_duplicate_headers(tmp_path: Path) -> None:
    err = error_of(xlsx(tmp_path, [["姓名", "姓名"], ["a", "b"]]))
    assert err.rule == "header.duplicate" and "column A" in err.en and "column B" in err.en


def test_xlsx_header_only_and_empty_sheet(tmp_path: Path) -> None:
    assert read_all(xlsx(tmp_path, [["姓名", "身份证号"]])) == (["姓名", "身份证号"], [])
    err = error_of(xlsx(tmp_path, [], name="e.xlsx"))
    assert err.rule == "file.empty" and "人员" in err.zh


def test_xlsx_data_not_in_the_corner_keeps_sheet_row_numbers(tmp_path: Path) -> None:
    def place(wb: Any, ws: Any) -> None:
        ws["C3"], ws["D3"] = "姓名", "年龄"
        ws["C4"], ws["D4"] = "张三", 3
        ws["C6"], ws["D6"] = "李四", 4

    header, rows = read_all(xlsx(tmp_path, [], setup=place))
    assert header == ["姓名", "年龄"]
    assert rows == [(4, ["张三", 3.0]), (6, ["李四", 4.0])]


def test_xlsx_empty_header_cell_names_the_sheet_column(tmp_path: Path) -> None:
    def place(wb: Any, ws: Any) -> None:
        ws["C1"], ws["E1"] = "姓名", "年龄"
        ws["C2"], ws["E2"] = "张三", 3

    err = error_of(xlsx(tmp_path, [], setup=place))
    assert err.rule == "header.empty" and "column D" in err.en


def test_xlsx_formula_without_cached_value_reads_empty(tmp_path: Path) -> None:
    # openpyxl writes formulas without the value Excel would cache; calamine then has nothing to
    # return. Files saved by Excel or WPS carry the cached value, which is what is read.
    path = xlsx(tmp_path, [["姓名", "标记"], ["张三", '=A2&"x"']])
    _header, rows = read_all(path)
    assert rows == [(2, ["张三", ""])]


def test_xlsx_extra_cells_beyond_the_header_are_ragged(tmp_path: Path) -> None:
    header, rows = read_all(xlsx(tmp_path, [["a", "b"], [1, 2], [1, 2, 3]]))
    assert header == ["a", "b"]
    assert rows[0] == (2, [1.0, 2.0])
    assert isinstance(rows[1][1], BadRow) and rows[1][1].problems[0].rule == "row.ragged"


def test_truncated_xlsx(tmp_path: Path) -> None:
    good = xlsx(tmp_path, [["a"], [1]])
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(good.read_bytes()[:300])
    err = error_of(bad)
    assert err.rule == "file.corrupt" and "truncated" in err.en


def test_text_named_xlsx(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "p.xlsx", "a,b\n1,2\n"))
    assert err.rule == "file.corrupt" and "CSV" in err.en


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "p.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
    assert error_of(path).rule == "file.corrupt"


def test_workbook_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = xlsx(tmp_path, [["a"], [1]])
    monkeypatch.setattr(readers, "MAX_WORKBOOK_BYTES", 100)
    err = error_of(path)
    assert err.rule == "file.too_large" and "CSV" in err.en


def test_xlsx_with_the_wrong_suffix_is_read_by_content(tmp_path: Path) -> None:
    path = xlsx(tmp_path, [["a"], ["x"]], name="really.xls")
    assert read_all(path) == (["a"], [(2, ["x"])])


# -- XLS (legacy) ----------------------------------------------------------------------------

def test_legacy_xls(tmp_path: Path) -> None:
    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("户籍")
    for c, v in enumerate(["姓名", "身份证号", "登记日期", "人数"]):
        ws.write(0, c, v)
    ws.write(1, 0, "张三")
    ws.write(1, 1, "110105194912310021")
    ws.write(1, 2, date(2018, 8, 20), xlwt.easyxf(num_format_str="YYYY-MM-DD"))
    ws.write(1, 3, 3)
    wb.add_sheet("其他").write(0, 0, "x")
    path = tmp_path / "old.xls"
    wb.save(str(path))
    with open_source(path) as src:
        assert src.format == "xls" and src.sheet == "户籍" and src.info["sheets"] == ["户籍", "其他"]
        assert src.header == ["姓名", "身份证号", "登记日期", "人数"]
        rows = list(src.rows)
    assert rows == [(2, ["张三", "110105194912310021", date(2018, 8, 20), 3])]
    assert error_of(path, sheet="x").rule == "sheet.unknown"


def test_html_disguised_as_xls(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "export.xls", "<html><table><tr><td>a</td></tr></table></html>"))
    assert err.rule == "file.corrupt" and "HTML" in err.en


# -- JSON Lines ------------------------------------------------------------------------------

def test_json_lines(tmp_path: Path) -> None:
    lines = [{"姓名": "张三", "年龄": 3}, {"姓名": "李四"}, {"年龄": 5, "姓名": "王五"}]
    path = write(tmp_path, "p.jsonl", "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n\n")
    header, rows = read_all(path)
    assert header == ["姓名", "年龄"]
    assert rows == [(1, ["张三", 3]), (2, ["李四", None]), (3, ["王五", 5])]


def test_json_lines_bad_rows_are_rejected_alone(tmp_path: Path) -> None:
    text = '{"a": 1, "b": 2}\n\n{"a": 1, "c": 3}\nnot json\n[1, 2]\n{"a": 9, "b": 8}\n{"a": '
    header, rows = read_all(write(tmp_path, "p.ndjson", text))
    assert header == ["a", "b"]
    by_row = dict(rows)
    assert list(by_row) == [1, 3, 4, 5, 6, 7]
    extra = by_row[3]
    assert isinstance(extra, BadRow) and extra.aligned and extra == [1, None]
    assert extra.problems[0].rule == "row.extra_keys" and "c" in extra.problems[0].en
    for n in (4, 5, 7):
        bad = by_row[n]
        assert isinstance(bad, BadRow) and bad.problems[0].rule == "row.json" and not bad.aligned
    assert "array" in by_row[5].problems[0].en  # type: ignore[attr-defined]
    assert by_row[6] == [9, 8]


def test_json_lines_first_line_must_be_an_object(tmp_path: Path) -> None:
    assert error_of(write(tmp_path, "a.jsonl", "{oops\n")).rule == "json.malformed"
    assert error_of(write(tmp_path, "b.jsonl", "[1, 2]\n")).rule == "json.not_object"
    assert error_of(write(tmp_path, "c.jsonl", "\n\n")).rule == "file.empty"
    assert error_of(write(tmp_path, "d.jsonl", '{"": 1}\n')).rule == "header.empty"


# -- JSON arrays -----------------------------------------------------------------------------

def test_json_array(tmp_path: Path) -> None:
    data = [{"姓名": "张三", "身份证号": "110105194912310021", "年龄": 3.5}, {"姓名": "李四", "年龄": 7}]
    header, rows = read_all(write(tmp_path, "p.json", json.dumps(data, ensure_ascii=False)))
    assert header == ["姓名", "身份证号", "年龄"]
    assert rows == [(1, ["张三", "110105194912310021", 3.5]), (2, ["李四", None, 7])]
    assert isinstance(rows[0][1][2], float)


def test_json_array_with_bom_and_gb18030(tmp_path: Path) -> None:
    text = json.dumps([{"姓名": "张三", "住址": "北京市朝阳区"}], ensure_ascii=False)
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_all(bom) == (["姓名", "住址"], [(1, ["张三", "北京市朝阳区"])])
    gb = tmp_path / "gb.json"
    gb.write_bytes(text.encode("gb18030"))
    assert read_all(gb) == (["姓名", "住址"], [(1, ["张三", "北京市朝阳区"])])


def test_json_array_bad_items_and_structure(tmp_path: Path) -> None:
    _header, rows = read_all(write(tmp_path, "p.json", '[{"a": 1}, 5, {"a": 2, "z": 0}]'))
    assert isinstance(rows[1][1], BadRow) and rows[1][1].problems[0].rule == "row.json"
    assert isinstance(rows[2][1], BadRow) and rows[2][1].problems[0].rule == "row.extra_keys"
    assert error_of(write(tmp_path, "o.json", '{"data": [{"a": 1}]}')).rule == "json.not_array"
    assert error_of(write(tmp_path, "e.json", "[]")).rule == "file.empty"
    assert error_of(write(tmp_path, "n.json", "[1, 2]")).rule == "json.not_object"
    assert error_of(write(tmp_path, "m.json", "[{oops}]")).rule == "json.malformed"


def test_truncated_json_array_fails_the_batch_naming_the_object(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, "t.json", '[{"a": 1}, {"a": 2}, {"a": '))
    assert err.rule == "json.malformed" and err.row == 3


def test_json_array_streams_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    item = json.dumps({"姓名": "张三丰", "住址": "北京市朝阳区" + "某" * 300, "年龄": 30}, ensure_ascii=False)
    with path.open("w", encoding="utf-8") as f:
        f.write("[" + ",\n".join([item] * 20_000) + "]")
    assert path.stat().st_size > 15 * 1024 * 1024
    tracemalloc.start()
    try:
        with open_source(path) as src:
            count = sum(1 for _ in src.rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000 and peak < 4 * 1024 * 1024
