"""The stewards' Excel template: a pair of sheets per resource, "N-资源" (description, item/value rows)
and "N-信息项" (one field per row), written blank or filled and read back.

Reading turns each pair into the same `Draft` the Data Package import makes, so both share one set
of rules (`datapackage.import_drafts`); only the locations differ: a problem names the sheet, the
row and the column. Vocabulary cells take the Chinese label (offered as a dropdown) or the English
code. Reading uses calamine (fast, no formulas evaluated); writing uses openpyxl.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet
from python_calamine import CalamineError, CalamineWorkbook
from sqlalchemy.orm import Session

from onceonly.accounts.actor import Actor
from onceonly.catalog import repository as repo
from onceonly.catalog import service
from onceonly.catalog.datapackage import Draft, Imported, import_drafts, normalize_vocab, unknown_type_message
from onceonly.catalog.models import Resource
from onceonly.catalog.schemas import FieldSpec, ResourceSpec
from onceonly.catalog.vocab import LABELS
from onceonly.errors import ValidationFailed

HELP_SHEET, LISTS_SHEET = "说明", "选项"
RES_KIND, FIELD_KIND = "资源", "信息项"
SHEET_RE = re.compile(r"^\s*(\d+)\s*-\s*(资源|信息项)\s*$")
SEPARATORS = re.compile(r"\s*[、,，;；|\n]\s*")
YES, NO = {"是", "y", "yes", "true", "1", "√", "✓"}, {"否", "n", "no", "false", "0", "×"}
NONE_WORD = "无"
MAX_BYTES = 20 * 1024 * 1024
BLANK_ROWS = 500  # dropdown-equipped rows after the last filled one

# (label, ResourceSpec key, hint); the order is the sheet's, import goes by label.
RESOURCE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("资源名称", "name", "必填。标识：小写字母开头，可含小写字母、数字、下划线，如 person_basic"),
    ("中文名称", "title", "必填。信息资源名称，如 人口基本信息"),
    ("提供方代码", "provider", "必填。提供方的统一社会信用代码（18 位）"),
    ("目录", "catalog", "必填。目录代码：101–105 基础目录，2NN 主题目录，3NN 部门目录"),
    ("分类", "category", "目录下的 3 位分类（目）代码，默认 001"),
    ("分类名称", "category_name", "分类尚不存在时按此名称新建；已存在可不填"),
    ("摘要", "summary", "资源内容的简要说明"),
    ("格式", "format", "默认 数据库；或 电子文件、图形图像 等"),
    ("共享类型", "share_type", "下拉选择：无条件共享 / 有条件共享 / 不予共享"),
    ("共享条件", "share_condition", "有条件共享时必填"),
    ("共享方式", "share_modes", "比对验证、检索查询、接口访问、批量复制，多个用顿号分隔；不填为全部，“无”为不提供"),
    ("开放类型", "open_type", "下拉选择：无条件开放 / 有条件开放 / 不予开放"),
    ("开放条件", "open_condition", "有条件开放时必填"),
    ("更新周期", "update_cycle", "下拉选择：实时 / 每日 / 每周 / 每月 / 每季度 / 每年"),
    ("关联资源", "related", "关联资源的代码，多个用顿号分隔"),
    ("主键", "key_fields", "必填。唯一标识一条记录的字段名，多个用顿号分隔"),
    ("查询字段", "query_fields", "可用于检索查询的字段名，多个用顿号分隔"),
)
INFO_ROWS = (("资源代码", "code"), ("版本", "version"), ("状态", "status"))  # written for reference, not read
# (header, FieldSpec key, width, hint)
FIELD_COLUMNS: tuple[tuple[str, str, int, str], ...] = (
    ("字段名", "name", 18, "必填。小写字母开头，可含小写字母、数字、下划线，如 citizen_id"),
    ("中文名称", "title", 18, "必填。信息项名称，如 公民身份号码"),
    ("类型", "type", 12, "字符型、整数型、数值型、布尔型、日期型、日期时间型；不填为字符型"),
    ("长度", "length", 8, "最大长度（字符数），整数"),
    ("必填", "required", 7, "是 / 否；主键字段总是必填"),
    ("唯一", "unique", 7, "是 / 否"),
    ("敏感级别", "sensitivity", 22, "公开、内部、个人信息、敏感个人信息；不填为内部"),
    ("校验", "check", 24, "按国家标准校验：公民身份号码、统一社会信用代码、手机号码"),
    ("代码集", "code_list", 16, "取值须在此代码集中，如 GB/T 2261.1"),
    ("枚举值", "enum", 16, "允许的取值，用顿号分隔"),
    ("最小值", "minimum", 9, "数值下限"),
    ("最大值", "maximum", 9, "数值上限"),
    ("正则", "pattern", 18, "取值须匹配的正则表达式"),
    ("说明", "description", 30, "信息项的说明"),
)
RESOURCE_BY_LABEL = {label: key for label, key, _ in RESOURCE_ROWS}
FIELD_BY_HEADER = {header: key for header, key, _, _ in FIELD_COLUMNS}
VOCAB_OF = {"share_type": "share_type", "open_type": "open_type", "update_cycle": "update_cycle",
            "type": "field_type", "sensitivity": "sensitivity", "check": "check"}
BOLD, HEADER_FILL = Font(bold=True), PatternFill("solid", fgColor="DDEBF7")
WRAP = Alignment(wrap_text=True, vertical="top")


# -- writing ----------------------------------------------------------------------------------

def write_template(session: Session, path: Path | BinaryIO, resources: Sequence[Resource]) -> None:
    """The template filled with resources, or blank (one empty pair of sheets) when none are given."""
    wb = Workbook()
    help_ws = wb.active
    assert help_ws is not None
    help_ws.title = HELP_SHEET
    _write_help(help_ws)
    lists = _write_lists(wb.create_sheet(LISTS_SHEET), session)
    chosen: list[Resource | None] = list(resources) or [None]
    for n, res in enumerate(chosen, 1):
        spec = service.spec_of(res) if res is not None else None
        _write_resource_sheet(wb.create_sheet(f"{n}-{RES_KIND}"), spec, res, lists)
        _write_fields_sheet(wb.create_sheet(f"{n}-{FIELD_KIND}"), spec, lists)
    wb.move_sheet(LISTS_SHEET, offset=len(wb.sheetnames) - 1 - wb.sheetnames.index(LISTS_SHEET))
    if isinstance(path, Path):
        path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)


def _header(ws: Worksheet, headers: Sequence[str], widths: Sequence[int]) -> None:
    for c, (text, width) in enumerate(zip(headers, widths, strict=True), 1):
        cell = ws.cell(row=1, column=c, value=text)
        cell.font, cell.fill = BOLD, HEADER_FILL
        ws.column_dimensions[get_column_letter(c)].width = width
    ws.freeze_panes = "A2"


def _dropdown(ws: Worksheet, formula: str | None, cells: str) -> None:
    if formula is None:
        return
    # "warning", not "stop": English codes are accepted too, so typing one must stay possible.
    dv = DataValidation(type="list", formula1=formula, allow_blank=True, errorStyle="warning",
                        showErrorMessage=True, errorTitle="不在列表中",
                        error="请从列表中选择；也可填写英文代码。")
    dv.add(cells)
    ws.add_data_validation(dv)


def _write_lists(ws: Worksheet, session: Session) -> dict[str, str | None]:
    """A hidden sheet of dropdown choices: list ranges have no 255-character limit, unlike inline lists."""
    columns = {
        "type": list(LABELS["field_type"].values()), "bool": ["是", "否"],
        "sensitivity": list(LABELS["sensitivity"].values()), "check": list(LABELS["check"].values()),
        "code_list": [cl.code for cl, _ in repo.list_code_lists(session)],
        "share_type": list(LABELS["share_type"].values()), "open_type": list(LABELS["open_type"].values()),
        "update_cycle": list(LABELS["update_cycle"].values()),
    }
    formulas: dict[str, str | None] = {}
    for c, (name, values) in enumerate(columns.items(), 1):
        letter = get_column_letter(c)
        ws.cell(row=1, column=c, value=name).font = BOLD
        for r, value in enumerate(values, 2):
            ws.cell(row=r, column=c, value=value)
        formulas[name] = f"'{LISTS_SHEET}'!${letter}$2:${letter}${len(values) + 1}" if values else None
    ws.sheet_state = "hidden"
    return formulas


def _write_help(ws: Worksheet) -> None:
    lines = [
        "OnceOnly 政务信息资源目录 — 资源描述模板",
        "",
        "1. 每个信息资源占两张工作表：“N-资源”（资源描述，在“内容”列填写）和“N-信息项”（每行一个信息项）。",
        "   N 从 1 开始；描述更多资源时，复制这两张表并改用下一个编号（如 2-资源、2-信息项）。",
        "2. “填写说明”或表头批注中写“必填”的项目必须填写；其余可留空，按默认值处理。",
        "3. 共享类型、开放类型、更新周期、类型、敏感级别、校验可从下拉列表选中文名称，",
        "   也可填英文代码（如 conditional、string）。",
        "4. 多个值（共享方式、主键、查询字段、关联资源、枚举值）用顿号“、”或逗号分隔。必填、唯一填“是”或“否”。",
        "5. 代码（提供方代码、目录、分类）请按文本填写，保留前导 0（如 001）。",
        "6. 导入时整份文件全部通过校验才会写入；每个错误都会指出工作表、行和列。",
        "7. 已发布的资源只能修改描述信息和增加可为空的信息项；其他变化会生成新版本（草稿）。",
        "8. 导入：命令行 onceonly catalog import 文件.xlsx；或 POST /api/v1/catalog/template。",
        "",
        "示例（N-信息项 的一行）：",
    ]
    for r, text in enumerate(lines, 1):
        ws.cell(row=r, column=1, value=text)
    ws.cell(row=1, column=1).font = Font(bold=True, size=14)
    example = ["citizen_id", "公民身份号码", "字符型", 18, "是", "是", LABELS["sensitivity"]["sensitive"],
               LABELS["check"]["citizen_id"], "", "", "", "", "", "主键"]
    row = len(lines) + 1
    for c, (header, *_rest) in enumerate(FIELD_COLUMNS, 1):
        ws.cell(row=row, column=c, value=header).font = BOLD
        ws.cell(row=row + 1, column=c, value=example[c - 1])
    row += 3
    ws.cell(row=row, column=1, value="词表（中文名称与英文代码均可填写）").font = BOLD
    for kind in ("share_type", "share_mode", "open_type", "update_cycle", "field_type", "sensitivity", "check"):
        row += 1
        ws.cell(row=row, column=1, value=kind).font = BOLD
        for code, label in LABELS[kind].items():
            row += 1
            ws.cell(row=row, column=2, value=code)
            ws.cell(row=row, column=3, value=label)
    ws.column_dimensions["A"].width = 16
    ws.column_dimensions["B"].width = 16
    ws.column_dimensions["C"].width = 30


def _listed(values: Sequence[str]) -> str:
    return "、".join(values)


def _resource_value(spec: ResourceSpec, key: str, category_name: str) -> Any:
    if key == "category_name":
        return category_name
    value = getattr(spec, key)
    if key in ("share_type", "open_type", "update_cycle"):
        return LABELS[key][value]
    if key == "share_modes":
        return _listed([LABELS["share_mode"][m] for m in value]) if value else NONE_WORD
    if isinstance(value, list):
        return _listed(value)
    return value


def _write_resource_sheet(ws: Worksheet, spec: ResourceSpec | None, res: Resource | None,
                          lists: dict[str, str | None]) -> None:
    _header(ws, ["项目", "内容", "填写说明"], [14, 48, 70])
    rows: list[tuple[str, Any, str]] = [
        (label, _resource_value(spec, key, res.category.name if res else "") if spec else None, hint)
        for label, key, hint in RESOURCE_ROWS
    ]
    if res is not None:
        rows += [("资源代码", res.code, "只读，导入时忽略"), ("版本", res.version, "只读，导入时忽略"),
                 ("状态", LABELS["status"][res.status], "只读，导入时忽略")]
    for r, (label, value, hint) in enumerate(rows, 2):
        ws.cell(row=r, column=1, value=label).font = BOLD
        cell = ws.cell(row=r, column=2, value=value)
        cell.number_format, cell.alignment = "@", WRAP
        ws.cell(row=r, column=3, value=hint).alignment = WRAP
        key = RESOURCE_BY_LABEL.get(label)
        if key in ("share_type", "open_type", "update_cycle"):
            _dropdown(ws, lists[key], f"B{r}")


def _field_value(f: FieldSpec, key: str) -> Any:
    value = getattr(f, key)
    if value is None:
        return None
    if key == "type":
        return LABELS["field_type"][value]
    if key in ("sensitivity", "check"):
        return LABELS[key][value]
    if key in ("required", "unique"):
        return "是" if value else "否"
    if key == "enum":
        return _listed(value)
    if key in ("minimum", "maximum") and float(value).is_integer():
        return int(value)
    return value


def _write_fields_sheet(ws: Worksheet, spec: ResourceSpec | None, lists: dict[str, str | None]) -> None:
    _header(ws, [h for h, *_ in FIELD_COLUMNS], [w for _, _, w, _ in FIELD_COLUMNS])
    for c, (_header_text, _key, _width, hint) in enumerate(FIELD_COLUMNS, 1):
        ws.cell(row=1, column=c).comment = Comment(hint, "OnceOnly")
    fields = spec.fields if spec else []
    last = len(fields) + 1 + BLANK_ROWS
    for c, (_h, key, _w, _hint) in enumerate(FIELD_COLUMNS, 1):
        letter = get_column_letter(c)
        text = key not in ("length", "minimum", "maximum")
        if text:  # typed codes keep their leading zeros; the column style covers rows not written here
            ws.column_dimensions[letter].number_format = "@"
        for r, f in enumerate(fields, 2):
            cell = ws.cell(row=r, column=c, value=_field_value(f, key))
            if text:
                cell.number_format = "@"
        dropdown = {"type": "type", "required": "bool", "unique": "bool", "sensitivity": "sensitivity",
                    "check": "check", "code_list": "code_list"}.get(key)
        if dropdown:
            _dropdown(ws, lists[dropdown], f"{letter}2:{letter}{last}")


# -- reading ----------------------------------------------------------------------------------

def _open(source: Path | BinaryIO, name: str) -> CalamineWorkbook:
    data = source.read_bytes() if isinstance(source, Path) else source.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValidationFailed(f"{name} is larger than {MAX_BYTES // (1024 * 1024)} MB", field="file")
    if not zipfile.is_zipfile(BytesIO(data)):
        hint = "it looks like a text file (a CSV?)" if _looks_like_text(data) else "it is not an Office Open XML file"
        raise ValidationFailed(f"{name} is not an Excel .xlsx workbook: {hint}; open it in Excel and save it as "
                               "“Excel 工作簿 (*.xlsx)”", field="file")
    try:
        return CalamineWorkbook.from_filelike(BytesIO(data))
    except CalamineError as exc:
        raise ValidationFailed(f"{name} is not a readable .xlsx workbook: {_first_line(exc)}", field="file") from None


def _looks_like_text(data: bytes) -> bool:
    sample = data[:4096]
    if b"\x00" in sample:
        return False
    for encoding in ("utf-8", "gb18030"):
        try:
            sample.decode(encoding)
            return True
        except UnicodeDecodeError:
            continue
    return False


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).strip()


def _rows(wb: CalamineWorkbook, sheet: str) -> list[list[Any]]:
    try:
        return wb.get_sheet_by_name(sheet).to_python(skip_empty_area=False)
    except CalamineError as exc:
        raise ValidationFailed(f"sheet {sheet} cannot be read: {_first_line(exc)}", field=f"sheet {sheet}") from None


def _first_line(exc: Exception) -> str:
    """Errors are one line (the CLI's rule); a reader's message may span several."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _vocab(draft: Draft, loc: tuple[str | int, ...], kind: str, text: str, label: str, where: str) -> str | None:
    code = normalize_vocab(kind, text)
    if code is None:
        if kind == "field_type":
            message = unknown_type_message(text)
        else:
            choices = "、".join(LABELS[kind].values())
            message = f"unknown {label} {text!r}; use one of {choices} (or {', '.join(LABELS[kind])})"
        draft.problem(loc, message, where)
    return code


def _put_resource_value(draft: Draft, key: str, label: str, value: Any, where: str) -> None:
    text, loc = _text(value), (key,)
    draft.where[loc] = where
    if not text:
        return
    if key == "category_name":
        draft.category_name = text
    elif key in ("catalog", "category"):
        draft.put(loc, text.zfill(3) if text.isdigit() else text, where)
    elif key in ("share_type", "open_type", "update_cycle"):
        code = _vocab(draft, loc, key, text, label, where)
        if code:
            draft.put(loc, code, where)
    elif key == "share_modes":
        modes = [] if text == NONE_WORD else [_vocab(draft, loc, "share_mode", m, label, where)
                                              for m in SEPARATORS.split(text) if m]
        if all(modes):
            draft.put(loc, modes, where)
    elif key in ("related", "key_fields", "query_fields"):
        draft.put(loc, [v for v in SEPARATORS.split(text) if v], where)
    else:
        draft.put(loc, text, where)


def _read_resource_sheet(draft: Draft, sheet: str, rows: list[list[Any]]) -> None:
    seen: dict[str, int] = {}
    for r, row in enumerate(rows, 1):
        label = _text(row[0] if row else "").rstrip("*＊ ").strip()
        value = row[1] if len(row) > 1 else ""
        if r == 1 and label == "项目":
            continue
        if not label:
            if _text(value):
                draft.problem(("sheet",), "a value without an item name in column A", f"sheet {sheet} row {r}")
            continue
        key = RESOURCE_BY_LABEL.get(label)
        if key is None:
            if label not in dict(INFO_ROWS):
                draft.problem(("sheet",), f"unknown item {label!r}", f"sheet {sheet} row {r} column A")
            continue
        if key in seen:
            draft.problem((key,), f"item {label} repeats row {seen[key]}", f"sheet {sheet} row {r} column A")
            continue
        seen[key] = r
        _put_resource_value(draft, key, label, value, f"sheet {sheet} row {r} column B ({label})")
    for label, key, _hint in RESOURCE_ROWS:  # a deleted row is still named when its value is missing
        draft.where.setdefault((key,), f"sheet {sheet} ({label})")


def _put_field_value(draft: Draft, loc: tuple[str | int, ...], key: str, header: str, value: Any,
                     where: str) -> None:
    draft.where[loc] = where
    text = _text(value)
    if not text:
        return
    if key in VOCAB_OF:
        code = _vocab(draft, loc, VOCAB_OF[key], text, header, where)
        if code:
            draft.put(loc, code, where)
    elif key in ("required", "unique"):
        if text.lower() not in YES | NO:
            draft.problem(loc, f"{text!r} is not 是 or 否", where)
        else:
            draft.put(loc, text.lower() in YES, where)
    elif key in ("length", "minimum", "maximum"):
        number = _to_number(value)
        if number is None or (key == "length" and not number.is_integer()):
            draft.problem(loc, f"{text!r} is not a {'whole number' if key == 'length' else 'number'}", where)
        else:
            draft.put(loc, int(number) if key == "length" else number, where)
    elif key == "enum":
        draft.put(loc, [v for v in SEPARATORS.split(text) if v], where)
    else:
        draft.put(loc, text, where)


def _to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _read_fields_sheet(draft: Draft, sheet: str, rows: list[list[Any]]) -> None:
    draft.where[("fields",)] = f"sheet {sheet}"
    draft.data["fields"] = []
    if not rows:
        return
    columns: dict[int, tuple[str, str]] = {}
    for c, cell in enumerate(rows[0]):
        header = _text(cell).rstrip("*＊ ").strip()
        if not header:
            continue
        key = FIELD_BY_HEADER.get(header)
        if key is None:
            draft.problem(("sheet",), f"unknown column {header!r}", f"sheet {sheet} row 1 column {header}")
        else:
            columns[c] = (key, header)
    if "name" not in {k for k, _ in columns.values()}:
        draft.problem(("fields",), "the column 字段名 is missing from row 1", f"sheet {sheet} row 1")
        return
    for r, row in enumerate(rows[1:], 2):
        if not any(_text(v) for v in row):
            continue
        j = len(draft.data["fields"])
        draft.data["fields"].append({})
        draft.where[("fields", j)] = f"sheet {sheet} row {r}"
        for c, (key, header) in columns.items():
            value = row[c] if c < len(row) else ""
            _put_field_value(draft, ("fields", j, key), key, header, value, f"sheet {sheet} row {r} column {header}")


def read_template(source: Path | BinaryIO, name: str = "the workbook") -> tuple[list[Draft], list[dict[str, str]]]:
    """Drafts of every filled pair of sheets, plus problems of the workbook as a whole."""
    wb = _open(source, name)
    pairs: dict[int, dict[str, str]] = {}
    problems: list[dict[str, str]] = []
    for sheet in wb.sheet_names:
        if sheet.strip() in (HELP_SHEET, LISTS_SHEET):
            continue
        m = SHEET_RE.match(sheet)
        if m is None:
            problems.append({"path": f"sheet {sheet}", "message": "is not a template sheet; name each pair "
                             "N-资源 and N-信息项 (N = 1, 2, …)"})
        else:
            pairs.setdefault(int(m[1]), {})[m[2]] = sheet
    drafts: list[Draft] = []
    for n in sorted(pairs):
        pair = pairs[n]
        missing = [kind for kind in (RES_KIND, FIELD_KIND) if kind not in pair]
        if missing:
            have = next(iter(pair.values()))
            problems.append({"path": f"sheet {have}", "message": f"has no partner sheet {n}-{missing[0]}"})
            continue
        res_rows, field_rows = _rows(wb, pair[RES_KIND]), _rows(wb, pair[FIELD_KIND])
        if not any(_text(row[1]) for row in res_rows[1:] if len(row) > 1 and _text(row[0]) not in dict(INFO_ROWS)) \
                and not any(_text(v) for row in field_rows[1:] for v in row):
            continue  # an unfilled pair, e.g. the blank template's
        draft = Draft(origin=f"sheet {pair[RES_KIND]}", json_paths=False)
        _read_resource_sheet(draft, pair[RES_KIND], res_rows)
        _read_fields_sheet(draft, pair[FIELD_KIND], field_rows)
        drafts.append(draft)
    if not drafts and not problems:
        problems.append({"path": name, "message": "describes no resource; fill in 1-资源 and 1-信息项"})
    return drafts, problems


def import_workbook(session: Session, actor: Actor, source: Path | BinaryIO,
                    name: str = "the workbook") -> list[Imported]:
    drafts, problems = read_template(source, name)
    return import_drafts(session, actor, drafts, problems)


def import_template(session: Session, actor: Actor, path: Path) -> list[Resource]:
    """Import a filled template all or nothing (the caller's transaction commits)."""
    return [i.resource for i in import_workbook(session, actor, path, path.name)]
