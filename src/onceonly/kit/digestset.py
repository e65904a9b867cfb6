"""A set of 64-bit digests at 8 bytes each: sorted numpy runs merged like a binary counter.

A Python set of ints costs 60–90 bytes an entry, which for the keys of a ten-million-row file
is most of a gigabyte; here it is 80 MB. Lookups and inserts go a chunk at a time. Runs stop
merging at `max_run` digests, so a merge never needs more than a few times 8 MB of scratch
memory (the peak a process reaches is what it keeps), at the price of one more binary search
per run and lookup."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


class DigestSet:
    def __init__(self, max_run: int = 1 << 20) -> None:
        self._runs: list[NDArray[np.int64]] = []
        self.max_run = max_run

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(r.nbytes for r in self._runs)

    def contains(self, digests: NDArray[np.int64]) -> NDArray[np.bool_]:
        """For each digest, whether the set holds it (faster when `digests` are sorted: the
        binary searches then narrow from the previous hit)."""
        found = np.zeros(len(digests), dtype=bool)
        for run in self._runs:
            pos = np.minimum(np.searchsorted(run, digests), len(run) - 1)
            found |= run[pos] == digests
        return found

    def add(self, digests: NDArray[np.int64]) -> None:
        fresh = np.unique(digests)
        if self._runs:
            fresh = fresh[~self.contains(fresh)]
        self.add_sorted(fresh)

    def add_sorted(self, fresh: NDArray[np.int64]) -> None:
        """Add digests the caller knows are sorted, distinct and not held yet (cheaper than
        `add`, which establishes all three)."""
        if not len(fresh):
            return
        self._runs.append(fresh)
        # Merge while the newer run is at least half the older one: O(log n) runs, each digest
        # moved O(log n) times.
        while (len(self._runs) > 1 and 2 * len(self._runs[-1]) >= len(self._runs[-2])
               and len(self._runs[-1]) + len(self._runs[-2]) <= self.max_run):
            newer = self._runs.pop()
            merged = np.concatenate((self._runs[-1], newer))
            merged.sort(kind="stable")  # timsort: two sorted runs, disjoint, merge in one pass
            self._runs[-1] = merged
