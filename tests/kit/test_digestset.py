"""DigestSet: membership as a Python set would answer it, at 8 bytes a digest."""

from __future__ import annotations

import random

import numpy as np

from onceonly.kit.digestset import DigestSet


def test_membership_matches_a_python_set() -> None:
    rng = random.Random(7)
    reference: set[int] = set()
    digests = DigestSet()
    for _ in range(60):
        chunk = [rng.randrange(-2**63, 2**63) if rng.random() < 0.7 else rng.choice([*reference] or [0])
                 for _ in range(rng.randrange(0, 300))]
        arr = np.array(chunk, dtype=np.int64)
        assert digests.contains(arr).tolist() == [d in reference for d in chunk]
        digests.add(arr)
        reference.update(chunk)
    assert len(digests) == len(reference)
    assert digests.nbytes == 8 * len(reference)


def test_runs_stay_few() -> None:
    digests = DigestSet()
    for i in range(1000):
        digests.add(np.arange(i * 10, i * 10 + 10, dtype=np.int64))
    assert len(digests._runs) <= 12
    assert digests.contains(np.array([0, 9999, 10_000, -1], dtype=np.int64)).tolist() == [True, True, False, False]


def test_extreme_values() -> None:
    digests = DigestSet()
    edge = np.array([np.iinfo(np.int64).min, -1, 0, np.iinfo(np.int64).max], dtype=np.int64)
    assert not digests.contains(edge).any()
    digests.add(edge)
    assert digests.contains(edge).all()


def test_runs_stop_merging_at_the_cap() -> None:
    digests = DigestSet(max_run=100)
    for i in range(50):
        digests.add(np.arange(i * 30, i * 30 + 30, dtype=np.int64))
    assert all(len(r) <= 100 for r in digests._runs)
    assert len(digests) == 1500
    assert digests.contains(np.array([0, 1499, 1500], dtype=np.int64)).tolist() == [True, True, False]


def test_merged_runs_stay_sorted_and_distinct() -> None:
    """Runs merge by concatenating and sorting two disjoint sorted runs; what comes out must
    still be one strictly increasing run, or the binary searches would miss members."""
    rng = np.random.default_rng(11)
    digests = DigestSet()
    held: set[int] = set()
    for _ in range(200):
        chunk = rng.integers(-2**63, 2**63 - 1, size=int(rng.integers(1, 500)), dtype=np.int64)
        digests.add(chunk)
        held.update(chunk.tolist())
    for run in digests._runs:
        assert (np.diff(run) > 0).all()
    assert len(digests) == len(held)
    probe = np.array([*sorted(held)[::37], 0, 1, -1], dtype=np.int64)
    assert digests.contains(probe).tolist() == [int(v) in held for v in probe]


def test_add_sorted_takes_what_the_caller_vouches_for() -> None:
    digests = DigestSet()
    digests.add_sorted(np.array([-5, 3, 9], dtype=np.int64))
    digests.add_sorted(np.array([], dtype=np.int64))
    digests.add_sorted(np.array([4, 10], dtype=np.int64))
    assert len(digests) == 5
    assert digests.contains(np.array([3, 4, 5, 9, 10, -5], dtype=np.int64)).tolist() == [
        True, True, False, True, True, True]
