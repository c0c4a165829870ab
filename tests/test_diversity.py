"""Diversity metrics cross-checked against reference implementations on the same texts.

References: `vendi-score` for the Vendi score, scikit-learn for pairwise cosine, nltk for
n-grams. (The `diversity` package pins transformers<5 and typer<0.10, so it cannot be installed
beside textsynth; its compression ratio is raw/gzip size, which the test recomputes.)
"""

from __future__ import annotations

import gzip

import numpy as np
from nltk.util import ngrams
from sklearn.metrics.pairwise import cosine_similarity
from vendi_score import vendi

from textsynth.embed import TextEmbedder
from textsynth.quality.diversity import (
    compression_ratio,
    distinct_n,
    mean_pairwise_cosine_distance,
    novelty,
    self_bleu,
    vendi_score,
)
from textsynth.quality.filters import words

from .conftest import REAL_DATA

TEXTS = [line.split("\t")[0] for line in REAL_DATA.read_text().splitlines()[:120]]
VECTORS = TextEmbedder()(TEXTS)


def test_vendi_matches_reference_kernel_form():
    reference = vendi.score_K(VECTORS.astype(np.float64) @ VECTORS.T.astype(np.float64))
    assert abs(vendi_score(VECTORS) - reference) < 1e-6 * reference


def test_mean_cosine_distance_matches_pairwise_matrix():
    sims = cosine_similarity(VECTORS)
    n = len(VECTORS)
    reference = 1 - (sims.sum() - np.trace(sims)) / (n * (n - 1))
    assert abs(mean_pairwise_cosine_distance(VECTORS) - reference) < 1e-5


def test_distinct_n_matches_nltk_ngrams():
    for n in (1, 2, 3):
        grams = [g for t in TEXTS for g in ngrams(words(t), n)]
        assert abs(distinct_n(TEXTS, n) - len(set(grams)) / len(grams)) < 1e-12


def test_compression_ratio_definition():
    raw = " ".join(TEXTS).encode()
    assert compression_ratio(TEXTS) == len(raw) / len(gzip.compress(raw))
    assert compression_ratio(["same text"] * 50) > compression_ratio(TEXTS)


def test_novelty_is_one_minus_nearest_other():
    sims = cosine_similarity(VECTORS)
    np.fill_diagonal(sims, -1)
    assert np.allclose(novelty(VECTORS), 1 - sims.max(axis=1), atol=1e-5)


def test_self_bleu_interval_brackets_mean_and_detects_repetition():
    varied = self_bleu(TEXTS, sample=40)
    assert varied["low"] < varied["high"]  # a bootstrap over texts, not one number
    assert self_bleu(TEXTS, sample=40) == varied  # seeded
    repetitive = self_bleu([f"the blender is great number {i % 3}" for i in range(40)], sample=40)
    assert repetitive["mean"] > varied["mean"]
