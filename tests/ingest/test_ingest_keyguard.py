"""KeyGuard: first row wins per key and per unique field, across chunks, exactly as a row-by-row
pass with Python sets would decide."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest

from onceonly.ingest.keyguard import KeyGuard


def fields(*specs: tuple[str, str, bool]) -> list[Any]:
    return [SimpleNamespace(name=n, type=t, unique=u, title=n.upper()) for n, t, u in specs]


def reference(rows: list[dict[str, Any]], guards: list[tuple[str, ...]]) -> list[list[str]]:
    seen: list[set[tuple[Any, ...]]] = [set() for _ in guards]
    out: list[list[str]] = []
    for row in rows:
        values = [tuple(row.get(n) for n in g) for g in guards]
        hit = [g for g, v, s in zip(guards, values, seen, strict=True) if None not in v and v in s]
        out.append([",".join(g) for g in hit])
        if not hit:
            for v, s in zip(values, seen, strict=True):
                if None not in v:
                    s.add(v)
    return out


def chunked(guard: KeyGuard, rows: list[dict[str, Any]], size: int) -> list[list[str]]:
    out: list[list[str]] = []
    for start in range(0, len(rows), size):
        chunk = rows[start:start + size]
        found = guard.check({f: [r.get(f) for r in chunk] for f in guard.fields}, len(chunk))
        out += [[p.field for p in found.get(i, [])] for i in range(len(chunk))]
    return out


@pytest.mark.parametrize("size", [1, 3, 50])
def test_single_text_key(size: int) -> None:
    rng = random.Random(size)
    rows = [{"id": rng.choice(["a", "b", "c", "d", None, "e"] + [str(i) for i in range(20)])} for _ in range(200)]
    got = chunked(KeyGuard(fields(("id", "string", False)), ["id"]), rows, size)
    assert [bool(p) for p in got] == [bool(p) for p in reference(rows, [("id",)])]


@pytest.mark.parametrize("size", [1, 4, 50])
def test_key_and_unique_field_claim_only_when_the_row_passes(size: int) -> None:
    rng = random.Random(size)
    rows = [{"a": rng.randrange(6), "b": rng.choice([1, 2]), "mail": rng.choice(["x", "y", "z", None, "w"])}
            for _ in range(150)]
    guard = KeyGuard(fields(("a", "integer", False), ("b", "integer", False), ("mail", "string", True)), ["a", "b"])
    got = chunked(guard, rows, size)
    expected = reference(rows, [("a", "b"), ("mail",)])
    assert [sorted(p) for p in got] == [sorted(e.split(",")[0] for e in row) for row in expected]


def test_messages_name_the_rule_and_value() -> None:
    guard = KeyGuard(fields(("id", "string", False), ("mail", "string", True)), ["id"])
    problems = guard.check({"id": ["k1", "k1", "k2"], "mail": ["m", "n", "m"]}, 3)
    assert 0 not in problems
    assert [(p.field, p.rule) for p in problems[1]] == [("id", "key.duplicate")] and "k1" in problems[1][0].zh
    assert [(p.field, p.rule) for p in problems[2]] == [("mail", "unique.duplicate")] and "MAIL" in problems[2][0].zh
