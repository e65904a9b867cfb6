"""Unchanged rows without re-checking them: the source-row digest.

Every row the store takes from a file keeps `_digest`, a 64-bit xxh3 digest of the raw cells it
was made from, seeded with a fingerprint of everything that turns cells into a stored row (the
resource's version and fields, its cross-field rules, the column map, the code lists and code
mappings, the pipeline's own version). When a later file has a row with the same digest as a
live stored row, that row would be checked and coerced into exactly the stored row again — so
it is counted `unchanged` without coercing, checking or writing it.

A key must still appear once per file (the first row kept). A digest hit is *claimed* by its row
number; a second hit on it, or a checked row whose key's stored digest an earlier row claimed,
is a duplicate. A checked row that changes a stored row claims that row's old digest, so a later
identical copy of the old row is a duplicate too (see `claim_stored`).

A false "unchanged" needs a 64-bit collision between a changed row and one of the live rows: for
ten million rows the chance is about 5 in a million per file of ten million rows. Any change to
the catalog, the mapping or the code lists changes the seed, so nothing matches and every row is
checked again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import xxhash
from numpy.typing import NDArray
from sqlalchemy.orm import Session

from onceonly.catalog.models import Resource
from onceonly.ingest.types import ColumnMap
from onceonly.store import service as store

# Bump when coercion or checking changes what a cell becomes: old digests then stop matching.
PIPELINE_VERSION = 1
_SEP = "\x1f"
_SIGN = 1 << 64
_HALF = 1 << 63


def fingerprint(res: Resource, cmap: ColumnMap, width: int, code_sets: Mapping[str, set[str]],
                local: Mapping[str, Mapping[str, str]]) -> int:
    """The seed: a digest of everything that decides what a row's cells become."""
    from onceonly.catalog.service import field_spec

    parts = {
        "pipeline": PIPELINE_VERSION, "resource": res.id, "version": res.version,
        "fields": [field_spec(f).model_dump(mode="json") for f in res.fields],
        "keys": list(res.key_fields), "rules": res.rules, "width": width,
        "columns": sorted(cmap.columns.items()),
        "codes": {k: sorted(v) for k, v in sorted(code_sets.items())},
        "local": {k: sorted(v.items()) for k, v in sorted(local.items())},
    }
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little")


class RowDigests:
    """Digests of raw rows (cells of the mapped columns, in column order) under one seed.
    Picklable: checking workers compute them for an initial load."""

    def __init__(self, seed: int, cmap: ColumnMap, width: int) -> None:
        self.seed = seed
        self.width = width
        self.indexes = sorted(cmap.columns)
        self._pick = self._picker()

    def _picker(self) -> Any:
        indexes = self.indexes
        return itemgetter(*indexes) if len(indexes) > 1 else (lambda v: (v[indexes[0]],))

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed, "width": self.width, "indexes": self.indexes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pick = self._picker()

    def of(self, rows: Sequence[tuple[int, list[Any]]]) -> NDArray[np.int64]:
        """One signed 64-bit digest per row; 0 for a row that cannot be digested (ragged,
        unreadable), which never matches because no stored row gets 0."""
        return self.of_values(list(map(itemgetter(1), rows)))

    def of_values(self, rows: Sequence[list[Any]]) -> NDArray[np.int64]:
        h = xxhash.xxh3_64_intdigest
        seed, width, pick, sep = self.seed, self.width, self._pick, _SEP
        out: list[int] = []
        append = out.append
        for values in rows:
            if values.__class__ is not list or len(values) != width:
                append(0)
                continue
            cells = pick(values)
            try:
                raw = sep.join(cells)
            except TypeError:  # typed cells (Excel, JSON): their repr is as stable
                raw = "\x00" + repr(cells)
            append(h(raw.encode("utf-8", "surrogatepass"), seed) or 1)
        return np.array(out, dtype=np.uint64).view(np.int64)


class KnownDigests:
    """The live stored rows' digests (sorted) and which row of this file claimed each."""

    def __init__(self, digests: NDArray[np.int64]) -> None:
        self.sorted = np.sort(digests)
        self.claimed = np.zeros(len(self.sorted), dtype=np.int64)

    @classmethod
    def load(cls, session: Session, res: Resource) -> KnownDigests:
        blocks = [np.fromiter(chain.from_iterable(b), dtype=np.int64, count=len(b))
                  for b in store.live_digest_blocks(session, res)]
        digests = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
        del blocks  # sorted in place: at most two copies alive at any time
        digests.sort()
        known = cls(digests[:0])
        known.sorted, known.claimed = digests, np.zeros(len(digests), dtype=np.int64)
        return known

    def __len__(self) -> int:
        return len(self.sorted)

    def _positions(self, digests: NDArray[np.int64]) -> tuple[NDArray[np.intp], NDArray[np.bool_]]:
        if not len(self.sorted):
            return np.zeros(len(digests), dtype=np.intp), np.zeros(len(digests), dtype=bool)
        # Looked up in digest order: numpy's binary search then starts from the previous hit,
        # which on millions of stored digests is several times faster than random order.
        order = np.argsort(digests)
        pos = np.empty(len(digests), dtype=np.intp)
        pos[order] = np.searchsorted(self.sorted, digests[order])
        pos = np.minimum(pos, len(self.sorted) - 1)
        return pos, (self.sorted[pos] == digests) & (digests != 0)

    def claim_unchanged(self, digests: NDArray[np.int64], numbers: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Rows (in file order) that are unchanged: a digest hit nobody claimed before, first in
        this chunk. They are claimed; every other row must be checked."""
        pos, hit = self._positions(digests)
        idx = np.flatnonzero(hit)
        fast = np.zeros(len(digests), dtype=bool)
        if not len(idx):
            return fast
        hp = pos[idx]
        _, first = np.unique(hp, return_index=True)
        once = np.zeros(len(idx), dtype=bool)
        once[first] = True
        ok = once & (self.claimed[hp] == 0)
        self.claimed[hp[ok]] = numbers[idx[ok]]
        fast[idx[ok]] = True
        return fast

    def claim_stored(self, number: int, digest: int) -> int:
        """A checked row `number` meets a stored row whose digest is `digest`. Returns 0 when it
        may go ahead (and claims the digest), else the row number of the file row that has the
        key already: smaller than `number` → this row is the duplicate; larger → that later row
        (counted unchanged in the same chunk) is, and this row takes over the claim."""
        if not len(self.sorted):
            return 0
        p = int(np.searchsorted(self.sorted, digest))
        if p >= len(self.sorted) or int(self.sorted[p]) != digest:
            return 0  # loaded under another seed: no file row of this batch can match it
        holder = int(self.claimed[p])
        if holder == 0 or holder > number:
            self.claimed[p] = number
        return holder

    def unclaimed(self) -> Iterable[int]:
        """Digests of live rows no row of the file stood for (replace mode's delete candidates)."""
        return (int(d) for d in self.sorted[self.claimed == 0])
