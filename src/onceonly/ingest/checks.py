"""Row validation, compiled once per batch.

`RowChecker(fields, key_fields, code_sets, local_mappings, cross_rules)` turns each catalog field
into one closure (coerce → built-in check → local code mapping → code list → enum → pattern →
length → minimum/maximum) so the per-row loop does no dispatch on type strings. A row's result is
its typed values, or *all* of its problems: every field is checked (one problem per field, the
first rule it breaks), then the cross-field rules whose fields are valid.

Rules (Problem.rule):

- reading: `row.ragged`, `row.json`, `row.extra_keys` (from the reader, field ``*``)
- coercion: see onceonly.ingest.coerce (`date.format`, `integer.fraction`, `string.scientific`…)
- `required` (empty value in a required field), `length.max` (characters, not bytes),
  `enum.unknown`, `pattern.mismatch`, `value.minimum`, `value.maximum`
- `code_list.unknown`: not a code of the bound list, after the department's local → standard
  code mapping was applied (a mapped local code wins over an equal-looking standard code; codes
  that lost their leading zeros in Excel, 1 for 01, are padded back when the list has one width)
- built-in checks via onceonly.kit.identifiers, value replaced by its normalized form:
  `citizen_id.format|birth_date|check_digit|region` (lowercase x → X, 15 → 18 digits),
  `uscc.format|check_digit|organization_code` (upper-cased), `mobile.format`
- cross-field rules (declared by the catalog, a list of dicts):
  ``{"rule": "citizen_id_agrees", "citizen_id": F, "sex": F|None, "birth_date": F|None}`` →
  `cross.citizen_id_sex` (GB/T 2261.1 code 1/2, or 男/女, against the parity of the ID's 17th digit;
  0 unknown and 9 unstated are not compared), `cross.citizen_id_birth_date`;
  ``{"rule": "not_before", "field": F, "other": G}`` → `cross.not_before` (F ≥ G when both set)
- `key.duplicate`, `unique.duplicate`: within-batch uniqueness, see `BatchKeys`.

Uniqueness within a batch: the first row with a key is kept; every later row with the same key is
rejected with `key.duplicate` (the file is read top to bottom, so "first" is the upper row). Only
rows that pass every other rule take part: a row rejected for another reason does not claim its
key, so a corrected duplicate further down is still accepted. Fields marked ``unique`` get the
same treatment separately (`unique.duplicate`); empty values never collide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from hashlib import blake2b
from typing import Any

from onceonly.ingest.coerce import CoercionError, clean_text, coercer, quote, to_date, to_string
from onceonly.ingest.types import BadRow, ColumnMap, IngestInputError, Problem
from onceonly.kit.identifiers import (
    IdentifierError,
    citizen_id_birth_date,
    citizen_id_sex,
    normalize_citizen_id,
    normalize_mobile,
    normalize_uscc,
)

Step = Callable[[Any], Any]
_ABSENT = object()
_BAD = object()  # a field value that failed its checks (generated code only)
_SEX_WORDS = {"1": "1", "2": "2", "男": "1", "女": "2", 1: "1", 2: "2"}


def _catalog_error(what: str) -> IngestInputError:
    return IngestInputError("catalog.invalid", f"目录定义有误，无法校验：{what}",
                            f"the catalog definition is invalid: {what}")


def _q(value: Any) -> str:
    return f'"{quote(value)}"'


class BatchKeys:
    """Keys seen in this batch, held as 64-bit digests only (about 60 bytes a row in a set,
    whatever the key's size). Keys made only of text use Python's per-process randomized SipHash;
    others a blake2b digest of their repr. A false "duplicate" needs a 64-bit collision: with ten
    million rows its chance is about 3 in a million."""

    def __init__(self, fields: Sequence[str], *, text_only: bool = False) -> None:
        self.fields = tuple(fields)
        self._text_only = text_only
        self._seen: set[int] = set()

    def digest(self, key: tuple[Any, ...]) -> int:
        if self._text_only:
            return hash(key)
        return int.from_bytes(blake2b(repr(key).encode(), digest_size=8).digest(), "little", signed=True)

    def seen(self, digest: int) -> bool:
        return digest in self._seen

    def remember(self, digest: int) -> None:
        self._seen.add(digest)

    def add(self, key: tuple[Any, ...]) -> bool:
        """Record the key; False if an earlier row of the batch had it already."""
        d = self.digest(key)
        if d in self._seen:
            return False
        self._seen.add(d)
        return True

    def __len__(self) -> int:
        return len(self._seen)


# --- per-field compilation ------------------------------------------------------------------


def _identifier_step(normalize: Callable[[str], str]) -> Step:
    def step(v: Any) -> Any:
        if v.__class__ is not str:
            return v
        try:
            return normalize(v)
        except IdentifierError as e:
            raise CoercionError(e.rule, f"{e.zh}：“{quote(v)}”", f"{e.en}: {_q(v)}") from None
    return step


def _mobile(v: str) -> str:
    # Fast path for the common clean value; it accepts exactly what normalize_mobile leaves unchanged.
    if len(v) == 11 and v.isascii() and v.isdigit() and v[0] == "1" and v[1] in "3456789":
        return v
    return normalize_mobile(v)


_BUILTIN: dict[str, Step] = {
    "citizen_id": _identifier_step(normalize_citizen_id),
    "uscc": _identifier_step(normalize_uscc),
    "mobile": _identifier_step(_mobile),
}


def _code_list_step(list_name: str, codes: set[str], local: Mapping[str, str], coerce: Step) -> Step:
    widths = {len(c) for c in codes}
    pad = next(iter(widths)) if len(widths) == 1 and all(c.isdigit() for c in codes) else 0

    def step(v: Any) -> Any:
        s = v if v.__class__ is str else str(v)
        mapped = local.get(s) if local else None
        if mapped is not None:
            s = mapped
        elif s not in codes:
            if pad and s.isdigit() and len(s) < pad and s.zfill(pad) in codes:
                s = s.zfill(pad)
            else:
                raise CoercionError("code_list.unknown", f"值“{quote(v)}”不是代码集 {list_name} 中的代码",
                                    f"value {_q(v)} is not a code of code list {list_name}")
        return s if v.__class__ is str else coerce(s)
    return step


def _enum_step(allowed: set[Any]) -> Step:
    shown = "、".join(sorted(map(str, allowed)))[:200]

    def step(v: Any) -> Any:
        if v in allowed:
            return v
        raise CoercionError("enum.unknown", f"值“{quote(v)}”不在允许的取值中（{shown}）",
                            f"value {_q(v)} is not one of the allowed values ({shown})")
    return step


def _pattern_step(pattern: str) -> Step:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise _catalog_error(f"pattern {pattern!r}: {exc}") from None
    shown = pattern[:80]

    def step(v: Any) -> Any:
        if v.__class__ is str and rx.fullmatch(v) is None:
            raise CoercionError("pattern.mismatch", f"值“{quote(v)}”不符合格式 {shown}",
                                f"value {_q(v)} does not match the pattern {shown}")
        return v
    return step


def _length_step(limit: int) -> Step:
    def step(v: Any) -> Any:
        if v.__class__ is str and len(v) > limit:
            raise CoercionError("length.max", f"值“{quote(v)}”有{len(v)}个字符，超过最大长度{limit}",
                                f"value {_q(v)} has {len(v)} characters, more than the maximum length {limit}")
        return v
    return step


def _bound_step(bound: Any, is_min: bool) -> Step:
    def step(v: Any) -> Any:
        try:
            bad = v < bound if is_min else v > bound
        except TypeError:  # naive vs aware datetimes: nothing to compare
            return v
        if bad:
            if is_min:
                raise CoercionError("value.minimum", f"值“{quote(v)}”小于最小值 {bound}",
                                    f"value {_q(v)} is less than the minimum {bound}")
            raise CoercionError("value.maximum", f"值“{quote(v)}”大于最大值 {bound}",
                                f"value {_q(v)} is greater than the maximum {bound}")
        return v
    return step


def _typed_constant(coerce: Step, value: Any, what: str) -> Any:
    try:
        return coerce(value)
    except CoercionError:
        raise _catalog_error(f"{what} {value!r} is not a value of the field's type") from None


@dataclass
class FieldPlan:
    """What was compiled for one field: its coercer, whether it is required, and its steps as
    (kind, parameter, closure); kinds: builtin, code_list, enum, pattern, length, minimum, maximum."""

    name: str
    type: str
    coerce: Step
    required: bool
    required_message: tuple[str, str, str]
    steps: list[tuple[str, Any, Step]]
    local_map: Mapping[str, str]

    def closure(self) -> Step:
        """raw → typed value; raises CoercionError (rule, zh, en)."""
        coerce, required, message = self.coerce, self.required, self.required_message
        chain = tuple(step for _, _, step in self.steps)
        if not chain and not required:
            return coerce

        def field_check(raw: Any) -> Any:
            v = coerce(raw)
            if v is None:
                if required:
                    raise CoercionError(*message)
                return None
            for step in chain:
                v = step(v)
            return v
        return field_check


def plan_field(f: Any, code_set: set[str] | None = None, local_map: Mapping[str, str] | None = None) -> FieldPlan:
    """Compile a catalog field's rules once; catalog mistakes raise IngestInputError(catalog.invalid)."""
    try:
        coerce = coercer(f.type)
    except ValueError as exc:
        raise _catalog_error(f"field {f.name}: {exc}") from None
    steps: list[tuple[str, Any, Step]] = []
    check = getattr(f, "check", None)
    if check:
        if check not in _BUILTIN:
            raise _catalog_error(f"field {f.name}: unknown check {check!r} (citizen_id, uscc, mobile)")
        if f.type != "string":
            raise _catalog_error(f"field {f.name}: check {check} needs a string field")
        steps.append(("builtin", check, _BUILTIN[check]))
    local = dict(local_map or {})
    if getattr(f, "code_list", None):
        if code_set is None:
            raise _catalog_error(f"field {f.name}: no codes given for code list {f.code_list}")
        steps.append(("code_list", code_set, _code_list_step(f.code_list, code_set, local, coerce)))
    constraints: Mapping[str, Any] = getattr(f, "constraints", None) or {}
    if constraints.get("enum"):
        allowed = {_typed_constant(coerce, v, "enum value") for v in constraints["enum"]}
        steps.append(("enum", allowed, _enum_step(allowed)))
    if constraints.get("pattern"):
        steps.append(("pattern", str(constraints["pattern"]), _pattern_step(str(constraints["pattern"]))))
    length = getattr(f, "length", None)
    if length and f.type == "string":
        steps.append(("length", int(length), _length_step(int(length))))
    for key, is_min in (("minimum", True), ("maximum", False)):
        if constraints.get(key) is not None:
            bound = _typed_constant(coerce, constraints[key], key)
            steps.append((key, bound, _bound_step(bound, is_min)))
    title = getattr(f, "title", "") or f.name
    message = ("required", f"必填项“{title}”（{f.name}）为空", f"required field {f.name} ({title}) is empty")
    return FieldPlan(f.name, f.type, coerce, bool(getattr(f, "required", False)), message, steps, local)


def compile_field(f: Any, code_set: set[str] | None = None, local_map: Mapping[str, str] | None = None) -> Step:
    """One closure raw → typed value for a catalog field; raises CoercionError (rule, zh, en)."""
    return plan_field(f, code_set, local_map).closure()


# --- the generated row function -------------------------------------------------------------
#
# check_row runs for every row of every file, so it is generated once per batch as one flat
# Python function: each field's cleaning, coercion and checks are inlined at its column index,
# with no per-cell function dispatch for the common string and date cases. The source holds only
# generated identifiers; every catalog value (names, codes, limits, messages) reaches it through
# the namespace, never as text spliced into code. `check` (by field name) uses the closures of
# the same FieldPlan, and the tests hold both paths to the same results.


def _emit_field(k: int, idx: int, plan: FieldPlan, ns: dict[str, Any]) -> list[str]:
    ns[f"N{k}"] = plan.name
    ns[f"REQ{k}"] = plan.required_message
    lines = ["    try:", f"        v = values[{idx}]"]
    if plan.type == "string":
        lines += ["        if v.__class__ is str:",
                  "            v = v.strip() if v.isascii() else CLEAN(v)",
                  "            if not v:",
                  "                v = None",
                  "            elif '+' in v:",
                  "                v = TO_STRING(v)",
                  "        else:",
                  "            v = TO_STRING(v)"]
    elif plan.type == "date":
        lines += ["        if v.__class__ is str and len(v) == 10 and v[4] == '-' and v[7] == '-':",
                  "            try:",
                  "                v = FROMISO(v)",
                  "            except ValueError:",
                  "                v = TO_DATE(v)",
                  "        else:",
                  "            v = TO_DATE(v)"]
    else:
        ns[f"CO{k}"] = plan.coerce
        lines.append(f"        v = CO{k}(v)")
    body: list[str] = []
    text = plan.type == "string"
    for j, (kind, param, step) in enumerate(plan.steps):
        ns[f"S{k}_{j}"] = step
        if kind == "code_list" and text:
            if plan.local_map:
                ns[f"M{k}"] = plan.local_map
                body.append(f"v = M{k}.get(v, v)")
            ns[f"C{k}"] = param
            body += [f"if v not in C{k}:", f"    v = S{k}_{j}(v)"]
        elif kind == "enum":
            ns[f"E{k}"] = param
            body += [f"if v not in E{k}:", f"    v = S{k}_{j}(v)"]
        elif kind == "length":
            ns[f"L{k}"] = param
            body += [f"if len(v) > L{k}:", f"    v = S{k}_{j}(v)"]
        else:
            body.append(f"v = S{k}_{j}(v)")
    if plan.required or body:
        lines.append("        if v is None:")
        lines.append(f"            raise CoercionError(*REQ{k})" if plan.required else "            pass")
        if body:
            lines.append("        else:")
            lines += ["            " + b for b in body]
    lines += [f"        f{k} = v",
              "    except CoercionError as e:",
              f"        f{k} = BAD",
              f"        problems = ADD(problems, N{k}, e)"]
    return lines


def _generate(plans: Sequence[tuple[int, FieldPlan]], width: int, ns: dict[str, Any]) -> Callable[..., Any]:
    lines = ["def check_row(values):",
             f"    if values.__class__ is not list or len(values) != {int(width)}:",
             "        early = READING(values)",
             "        if early is not None:",
             "            return None, early",
             "    problems = None"]
    for k, (idx, plan) in enumerate(plans):
        lines += _emit_field(k, int(idx), plan, ns)
    out = "{" + ", ".join(f"N{k}: f{k}" for k in range(len(plans))) + "}"
    lines += ["    if problems is None:",
              f"        return FINISH({out}, values)",
              f"    return FAIL({out}, values, problems)"]
    ns.update(CLEAN=clean_text, TO_STRING=to_string, TO_DATE=to_date, FROMISO=date.fromisoformat,
              CoercionError=CoercionError, BAD=_BAD, ADD=_add_problem)
    exec(compile("\n".join(lines), "<onceonly.ingest.checks.check_row>", "exec"), ns)
    fn: Callable[..., Any] = ns["check_row"]
    return fn


def _add_problem(problems: list[Problem] | None, name: str, e: CoercionError) -> list[Problem]:
    p = Problem(name, e.rule, e.zh, e.en)
    if problems is None:
        return [p]
    problems.append(p)
    return problems


# --- cross-field rules ----------------------------------------------------------------------

CrossRule = Callable[[dict[str, Any]], Problem | None]


def _citizen_id_agrees(spec: Mapping[str, Any], titles: Mapping[str, str]) -> list[tuple[tuple[str, ...], CrossRule]]:
    cid_f = spec.get("citizen_id")
    if not cid_f:
        raise _catalog_error(f"cross rule {dict(spec)!r} names no citizen_id field")
    out: list[tuple[tuple[str, ...], CrossRule]] = []
    sex_f, birth_f = spec.get("sex"), spec.get("birth_date")
    if sex_f:
        def sex_rule(row: dict[str, Any]) -> Problem | None:
            cid, sex = row[cid_f], row[sex_f]
            if cid is None or sex is None or len(cid) != 18:
                return None
            code = _SEX_WORDS.get(sex)
            if code is None or code == citizen_id_sex(cid):
                return None
            return Problem(sex_f, "cross.citizen_id_sex",
                           f"{titles[sex_f]}（{sex_f}）“{quote(sex)}”与{titles[cid_f]}（{cid_f}）第17位表示的性别不符",
                           f"{sex_f} {_q(sex)} disagrees with the sex encoded in {cid_f} (parity of its 17th digit)")
        out.append(((cid_f, sex_f), sex_rule))
    if birth_f:
        def birth_rule(row: dict[str, Any]) -> Problem | None:
            cid, birth = row[cid_f], row[birth_f]
            if cid is None or birth is None or len(cid) != 18:
                return None
            if isinstance(birth, datetime):
                birth = birth.date()
            if not isinstance(birth, date) or birth == citizen_id_birth_date(cid):
                return None
            return Problem(birth_f, "cross.citizen_id_birth_date",
                           f"{titles[birth_f]}（{birth_f}）{birth.isoformat()}与{titles[cid_f]}（{cid_f}）中的出生日期"
                           f"{citizen_id_birth_date(cid).isoformat()}不符",
                           f"{birth_f} {birth.isoformat()} disagrees with the birth date in {cid_f} "
                           f"({citizen_id_birth_date(cid).isoformat()})")
        out.append(((cid_f, birth_f), birth_rule))
    return out


def _citizen_id_fast(cid_f: str, sex_f: str | None, birth_f: str | None) -> Callable[[dict[str, Any]], bool]:
    """True when the row certainly passes citizen_id_agrees; False sends it to the exact rules
    (which build the messages). The hot path of every person file, so kept to a few operations."""
    def ok(row: dict[str, Any]) -> bool:
        cid = row[cid_f]
        if cid is None or len(cid) != 18:
            return True
        if sex_f is not None:
            code = _SEX_WORDS.get(row[sex_f])
            if code is not None and code != citizen_id_sex(cid):
                return False
        if birth_f is not None:
            b = row[birth_f]
            if b is not None and (b.__class__ is not date or b.year * 10000 + b.month * 100 + b.day != int(cid[6:14])):
                return False
        return True
    return ok


def _not_before(spec: Mapping[str, Any], titles: Mapping[str, str]) -> list[tuple[tuple[str, ...], CrossRule]]:
    a, b = spec.get("field"), spec.get("other")
    if not a or not b:
        raise _catalog_error(f"cross rule {dict(spec)!r} needs 'field' and 'other'")

    def rule(row: dict[str, Any]) -> Problem | None:
        va, vb = row[a], row[b]
        if va is None or vb is None:
            return None
        try:
            if not va < vb:
                return None
        except TypeError:
            return None
        return Problem(a, "cross.not_before", f"{titles[a]}（{a}）“{quote(va)}”早于{titles[b]}（{b}）“{quote(vb)}”",
                       f"{a} {_q(va)} is before {b} {_q(vb)}")
    return [((a, b), rule)]


CROSS_RULES: dict[str, Callable[[Mapping[str, Any], Mapping[str, str]], list[tuple[tuple[str, ...], CrossRule]]]] = {
    "citizen_id_agrees": _citizen_id_agrees,
    "not_before": _not_before,
}


# --- the row checker ------------------------------------------------------------------------


def duplicate_key(key_fields: Sequence[str], key: tuple[Any, ...]) -> Problem:
    """The rejection of a row whose key an earlier row of the file had (the first is kept)."""
    shown = ", ".join(f"{n}={quote(v)}" for n, v in zip(key_fields, key, strict=True))
    return Problem(key_fields[0], "key.duplicate", f"主键（{shown}）与本文件前面的一行重复，保留先出现的一行",
                   f"the key ({shown}) repeats an earlier row of this file; the first one is kept")


def duplicate_unique(name: str, title: str, value: Any) -> Problem:
    return Problem(name, "unique.duplicate", f"{title}（{name}）“{quote(value)}”与本文件前面的一行重复",
                   f"{name} {_q(value)} repeats an earlier row of this file; the first one is kept")


def _ragged(values: list[Any], width: int) -> Problem:
    return Problem("*", "row.ragged", f"本行有{len(values)}个单元格，表头有{width}列",
                   f"the row has {len(values)} cells but the header has {width} columns")


class RowChecker:
    """Validates rows of one batch. Build it once per batch; `check` takes {field: raw value}
    (dynamic ingest, API), `check_row` takes a Source row's cell list and needs `columns`."""

    def __init__(self, fields: Sequence[Any], key_fields: Sequence[str] = (),
                 code_sets: Mapping[str, set[str]] | None = None,
                 local_mappings: Mapping[str, Mapping[str, str]] | None = None,
                 cross_rules: Iterable[Mapping[str, Any]] | None = None, *,
                 columns: ColumnMap | Mapping[int, str] | None = None, width: int | None = None,
                 track_keys: bool = True) -> None:
        code_sets = code_sets or {}
        local_mappings = local_mappings or {}
        by_name = {f.name: f for f in fields}
        self.fields = list(fields)
        self.titles = {f.name: (getattr(f, "title", "") or f.name) for f in fields}
        self.plans = {f.name: plan_field(f, code_sets.get(f.name), local_mappings.get(f.name)) for f in fields}
        self._fns: dict[str, Step] = {name: plan.closure() for name, plan in self.plans.items()}
        self._required = [f.name for f in fields if getattr(f, "required", False)]

        self._cross: list[tuple[tuple[str, ...], CrossRule]] = []
        specs: list[tuple[Mapping[str, Any], list[tuple[tuple[str, ...], CrossRule]]]] = []
        for spec in cross_rules or ():
            kind = spec.get("rule")
            make = CROSS_RULES.get(str(kind))
            if make is None:
                raise _catalog_error(f"unknown cross rule {kind!r} (known: {', '.join(CROSS_RULES)})")
            made = make(spec, self.titles)
            for names, _rule in made:
                unknown = [n for n in names if n not in by_name]
                if unknown:
                    raise _catalog_error(f"cross rule {kind} names unknown field(s) {', '.join(unknown)}")
            self._cross += made
            specs.append((spec, made))

        for name in key_fields:
            if name not in by_name:
                raise _catalog_error(f"key field {name} is not a field")
        self.key_fields = tuple(key_fields)
        self.keys: BatchKeys | None = None
        if self.key_fields and track_keys:
            text_only = all(by_name[n].type == "string" for n in self.key_fields)
            self.keys = BatchKeys(self.key_fields, text_only=text_only)
        self._unique: list[tuple[str, BatchKeys]] = [
            (f.name, BatchKeys((f.name,), text_only=f.type == "string")) for f in fields
            if track_keys and getattr(f, "unique", False) and (f.name,) != self.key_fields]

        mapping = columns.columns if isinstance(columns, ColumnMap) else dict(columns or {})
        self.width = width if width is not None else (max(mapping) + 1 if mapping else 0)
        unknown_targets = sorted(set(mapping.values()) - set(self.plans))
        if unknown_targets:
            raise _catalog_error(f"columns map to unknown field(s) {', '.join(unknown_targets)}")
        mapped = set(mapping.values())
        # Fast pass/fail predicates for rows whose cells all passed; a False reruns the exact rules.
        self._row_fast: list[Callable[[dict[str, Any]], bool]] = []
        for spec, made in specs:
            if spec.get("rule") == "citizen_id_agrees":
                if spec["citizen_id"] in mapped:
                    self._row_fast.append(_citizen_id_fast(
                        spec["citizen_id"], spec.get("sex") if spec.get("sex") in mapped else None,
                        spec.get("birth_date") if spec.get("birth_date") in mapped else None))
                continue
            for names, rule in made:
                if set(names) <= mapped:
                    self._row_fast.append(lambda row, rule=rule: rule(row) is None)  # type: ignore[misc]
        self._simple_key: str | None = None
        self._simple_seen: set[int] = set()
        if (self.keys is not None and self.keys._text_only and len(self.key_fields) == 1 and not self._unique
                and self.key_fields[0] in mapped):
            self._simple_key = self.key_fields[0]
            self._simple_seen = self.keys._seen
        self._row_fn = _generate([(i, self.plans[name]) for i, name in sorted(mapping.items())], self.width,
                                 {"READING": self._reading_problems, "FINISH": self._finish_row,
                                  "FAIL": self._fail_row})

    # -- entry points --

    def check(self, raw: Mapping[str, Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
        """Fields absent from `raw` are not in the result; absent required fields are problems."""
        out: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, fn in self._fns.items():
            value = raw.get(name, _ABSENT)
            if value is _ABSENT:
                if name in self._required:
                    problems.append(Problem(name, "required", f"缺少必填项“{self.titles[name]}”（{name}）",
                                            f"required field {name} ({self.titles[name]}) is missing"))
                continue
            try:
                out[name] = fn(value)
            except CoercionError as e:
                problems.append(Problem(name, e.rule, e.zh, e.en))
        return self._finish(out, problems)

    def check_row(self, values: list[Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
        """A row's cells in header order → (typed values of the mapped fields, []) or (None, problems).
        Needs `columns` (and `width`, the header's length) given to the constructor."""
        result: tuple[dict[str, Any] | None, list[Problem]] = self._row_fn(values)
        return result

    def _finish_row(self, out: dict[str, Any], values: list[Any]) -> tuple[dict[str, Any] | None, list[Problem]]:
        """The hot path of a row whose cells all passed; anything unusual goes through _finish."""
        if values.__class__ is not list:  # an aligned BadRow (JSON object with extra keys)
            return self._finish(out, list(getattr(values, "problems", [])))
        for ok in self._row_fast:
            if not ok(out):
                return self._finish(out, [])
        if self._simple_key is None:
            if self.keys is None and not self._unique:  # keys are checked by the caller (keyguard)
                return out, []
            return self._finish(out, [])
        v = out[self._simple_key]
        if v is not None:
            d = hash((v,))  # == BatchKeys.digest((v,)) for a text key
            if d in self._simple_seen:
                return self._finish(out, [])
            self._simple_seen.add(d)
        return out, []

    def _fail_row(self, out: dict[str, Any], values: list[Any], problems: list[Problem]
                  ) -> tuple[dict[str, Any] | None, list[Problem]]:
        if values.__class__ is not list:
            problems[:0] = getattr(values, "problems", [])
        return self._finish({k: v for k, v in out.items() if v is not _BAD}, problems)

    # -- helpers --

    def _reading_problems(self, values: list[Any]) -> list[Problem] | None:
        """Problems that stop a row before its cells are looked at; None to go on checking."""
        if isinstance(values, BadRow):
            if not values.aligned:
                return list(values.problems)
            if len(values) == self.width:
                return None
        if len(values) != self.width:
            return [_ragged(values, self.width)]
        return None

    def _finish(self, out: dict[str, Any], problems: list[Problem]) -> tuple[dict[str, Any] | None, list[Problem]]:
        for names, rule in self._cross:
            for n in names:
                if n not in out:
                    break
            else:
                p = rule(out)
                if p is not None:
                    problems.append(p)
        if problems:
            return None, problems
        if self.keys is None and not self._unique:
            return out, problems
        # Look every key up first and remember them only when the row is accepted, so a rejected
        # row never claims a key.
        claims: list[tuple[BatchKeys, int]] = []
        if self.keys is not None:
            key = tuple([out.get(n) for n in self.key_fields])
            if None not in key:
                d = self.keys.digest(key)
                if self.keys.seen(d):
                    problems.append(duplicate_key(self.key_fields, key))
                claims.append((self.keys, d))
        for name, keys in self._unique:
            v = out.get(name)
            if v is not None:
                d = keys.digest((v,))
                if keys.seen(d):
                    problems.append(duplicate_unique(name, self.titles[name], v))
                claims.append((keys, d))
        if problems:
            return None, problems
        for keys, d in claims:
            keys.remember(d)
        return out, problems


def compile_row_checker(fields: Sequence[Any], code_sets: Mapping[str, set[str]] | None = None,
                        mappings: Mapping[str, Mapping[str, str]] | None = None,
                        cross_rules: Iterable[Mapping[str, Any]] | None = None, *, key_fields: Sequence[str] = (),
                        columns: ColumnMap | Mapping[int, str] | None = None, width: int | None = None) -> RowChecker:
    """Keyword-friendly spelling of RowChecker(...)."""
    return RowChecker(fields, key_fields, code_sets, mappings, cross_rules, columns=columns, width=width)
