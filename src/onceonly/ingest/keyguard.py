"""Uniqueness within a file, a chunk at a time: the first row with a key (or with a value of a
field marked ``unique``) is kept, later ones are rejected — the rule `checks.BatchKeys` applies
row by row, here with the file's digests in a `DigestSet` (8 bytes a row) so a ten-million-row
file does not hold ten million Python ints.

Digests: Python's per-process SipHash of text-only keys, blake2b of the repr of others (see
`checks.BatchKeys`); a false duplicate needs a 64-bit collision (about 3 in a million for ten
million rows) and only sends the row to quarantine, where it can be resubmitted."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onceonly.ingest.checks import BatchKeys, duplicate_key, duplicate_unique
from onceonly.ingest.types import Problem
from onceonly.kit.digestset import DigestSet


class _Guard:
    def __init__(self, names: tuple[str, ...], text_only: bool, title: str) -> None:
        self.names = names
        self.digester = BatchKeys(names, text_only=text_only)
        self.title = title
        self.earlier = DigestSet()

    def problem(self, values: tuple[Any, ...]) -> Problem:
        if len(self.names) == 1 and self.title:
            return duplicate_unique(self.names[0], self.title, values[0])
        return duplicate_key(self.names, values)


class KeyGuard:
    def __init__(self, fields: Sequence[Any], key_fields: Sequence[str]) -> None:
        by_name = {f.name: f for f in fields}
        self.guards: list[_Guard] = []
        if key_fields:
            text_only = all(by_name[n].type == "string" for n in key_fields)
            self.guards.append(_Guard(tuple(key_fields), text_only, ""))
        for f in fields:
            if getattr(f, "unique", False) and (f.name,) != tuple(key_fields):
                self.guards.append(_Guard((f.name,), f.type == "string", getattr(f, "title", "") or f.name))

    @property
    def fields(self) -> list[str]:
        """The fields whose values the guard looks at."""
        return list(dict.fromkeys(n for g in self.guards for n in g.names))

    def check(self, columns: Mapping[str, Sequence[Any]], count: int) -> dict[int, list[Problem]]:
        """The uniqueness problems of the `count` rows (given as typed columns of `fields`) that
        have any, by row index; the others are their key's first. File order; only rows found
        unique claim their values, so a rejected row never blocks a later one."""
        problems: dict[int, list[Problem]] = {}
        if not self.guards or not count:
            return problems
        if len(self.guards) == 1 and len(self.guards[0].names) == 1:
            return self._check_one(columns[self.guards[0].names[0]], problems)
        table: list[tuple[_Guard, list[tuple[Any, ...] | None], list[int], Any]] = []
        for g in self.guards:
            full = list(zip(*[columns[n] for n in g.names], strict=True))
            values: list[tuple[Any, ...] | None] = [v if None not in v else None for v in full]
            digest = g.digester.digest
            digests = [digest(v) if v is not None else 0 for v in values]
            earlier = g.earlier.contains(np.array(digests, dtype=np.int64))
            table.append((g, values, digests, earlier))
        local: list[set[int]] = [set() for _ in self.guards]
        claimed: list[list[int]] = [[] for _ in self.guards]
        for i in range(count):
            for n, (g, values, digests, earlier) in enumerate(table):
                v = values[i]
                if v is not None and (earlier[i] or digests[i] in local[n]):
                    problems.setdefault(i, []).append(g.problem(v))
            if i in problems:
                continue
            for n, (_g, values, digests, _e) in enumerate(table):
                if values[i] is not None:
                    local[n].add(digests[i])
                    claimed[n].append(digests[i])
        for n, g in enumerate(self.guards):
            g.earlier.add(np.array(claimed[n], dtype=np.int64))
        return problems

    def _check_one(self, values: Sequence[Any], problems: dict[int, list[Problem]]) -> dict[int, list[Problem]]:
        """One guarded field (the usual single-field key), vectorized: a row is a duplicate when an
        earlier chunk had its value or an earlier row of this chunk did — with one guard a
        rejected row could only have been rejected for that same value, so claims need no loop."""
        g = self.guards[0]
        digest = g.digester.digest
        digests = np.array([digest((v,)) if v is not None else 0 for v in values], dtype=np.int64)
        # In digest order (stable: equal digests stay in file order), so the first of each value
        # is the one before its equals, and the lookups in earlier chunks' runs go in order.
        order = np.argsort(digests, kind="stable")
        ordered = digests[order]
        later = np.zeros(len(values), dtype=bool)
        later[1:] = ordered[1:] == ordered[:-1]
        present = np.array([v is not None for v in values], dtype=bool)[order]
        duplicate = present & (later | g.earlier.contains(ordered))
        for i in np.sort(order[duplicate]).tolist():
            problems[i] = [g.problem((values[i],))]
        g.earlier.add_sorted(ordered[present & ~duplicate])
        return problems
