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
