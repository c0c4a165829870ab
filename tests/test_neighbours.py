"""Pair search against a brute-force n×n reference on clustered unit vectors."""

import numpy as np
import pytest

from textsynth.quality.dedup import semantic_duplicates
from textsynth.quality.neighbours import similar_pairs


def clustered(n: int, d: int = 32, seed: int = 0) -> np.ndarray:
    """Groups of 1-4 rows around random centres: pairs well above and well below 0.9."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n, d))
    rows = centres[rng.integers(0, n // 2, size=n)] + rng.standard_normal((n, d)) * 0.12
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def reference(vectors: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    sims = vectors @ vectors.T
    a, b = np.nonzero(np.tril(sims >= threshold, k=-1))
    return set(zip(a.tolist(), b.tolist()))


@pytest.mark.parametrize("exact_up_to", [10_000, 0], ids=["exact", "ivf"])
def test_pairs_match_brute_force(exact_up_to: int) -> None:
    vectors = clustered(3000)
    later, earlier, sims = similar_pairs(vectors, 0.9, exact_up_to=exact_up_to)
    found = set(zip(later.tolist(), earlier.tolist()))
    truth = reference(vectors, 0.9)
    assert len(found) == len(later), "each pair once"
    assert (later > earlier).all()
    assert found <= truth, "no pair below the threshold"
    np.testing.assert_allclose(sims, np.einsum("ij,ij->i", vectors[later], vectors[earlier]), atol=1e-5)
    recall = len(found & truth) / len(truth)
    assert recall == 1.0 if exact_up_to else recall >= 0.97


def test_greedy_keeps_one_representative_per_cluster() -> None:
    vectors = clustered(2000, seed=1)
    flagged = semantic_duplicates(vectors, 0.9)
    dup = {i for i, _, _ in flagged}
    for i, j, sim in flagged:  # the representative of every flagged pair is kept
        assert j < i and j not in dup and sim >= 0.9
    kept = [i for i in range(len(vectors)) if i not in dup]
    assert not reference(vectors[kept], 0.9), "kept rows are pairwise below the threshold"
