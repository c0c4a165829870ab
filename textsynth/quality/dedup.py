"""Tiered deduplication: exact → near (MinHash LSH) → semantic (embeddings + faiss).

Within a scope (one label, or everything), records are visited best first (quality score
descending, then id) and each is compared only with records already kept, so every cluster
keeps exactly one representative, the best one, and no pair of duplicates loses both members.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict

import numpy as np

from textsynth.embed import Embedder
from textsynth.quality.base import Stage
from textsynth.quality.filters import words
from textsynth.quality.neighbours import similar_pairs
from textsynth.quality_config import DedupConfig
from textsynth.records import Record


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[\W_]+", " ", text).strip()


def shingles(text: str, n: int = 3) -> set[str]:
    w = words(text)
    if len(w) < n:
        return {" ".join(w)}
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def quality_rank(record: Record) -> tuple[float, str]:
    """Sort key, best first: label confidence / judge score descending, then id for determinism."""
    return -record.scores.get("quality", 0.0), record.id


def quality_order(records: list[Record]) -> list[Record]:
    """Records best first (`quality_rank`)."""
    return sorted(records, key=quality_rank)


class Dedup(Stage):
    name = "dedup"

    def __init__(self, config: DedupConfig, embedder: Embedder | None) -> None:
        super().__init__()
        self.config = config
        self.embedder = embedder
        self.vectors: dict[str, np.ndarray] = {}
        self.members: dict[str, list[Record]] = defaultdict(list)  # representative id → duplicates

    def _mark(self, record: Record, rep: Record, method: str, similarity: float) -> None:
        """`record` duplicates `rep`. Its own duplicates from an earlier tier move to `rep` (their
        `dup_via` names the record they matched, and their similarity is to it), so every
        duplicate points at a representative that was kept."""
        record.reject(f"duplicate_of:{rep.id}")
        record.cluster = rep.id
        record.scores["dup_similarity"] = round(float(similarity), 4)
        record.fields["dup_method"] = method
        for member in self.members.pop(record.id, []):
            member.reasons[0], member.cluster = f"duplicate_of:{rep.id}", rep.id
            member.fields.setdefault("dup_via", record.id)
            self.members[rep.id].append(member)
        self.members[rep.id].append(record)

    def process(self, kept: list[Record]) -> None:
        groups: dict[str, list[Record]] = defaultdict(list)
        for r in kept:
            groups[r.label if self.config.scope == "label" else "*"].append(r)
        for group in groups.values():
            ordered = quality_order(group)
            seed = pipeline_seed_of(ordered)
            for r in ordered:
                r.cluster = r.id
            if self.config.exact:
                ordered = self._exact(ordered)
            if self.config.minhash_threshold is not None:
                ordered = self._minhash(ordered, self.config.minhash_threshold, seed)
            if self.config.min_cosine_similarity is not None and self.embedder is not None:
                self._semantic(ordered, self.config.min_cosine_similarity, seed)

    def _exact(self, ordered: list[Record]) -> list[Record]:
        first: dict[str, Record] = {}
        survivors = []
        for r in ordered:
            key = hashlib.sha256(normalize(r.text or "").encode()).hexdigest()
            if key in first:
                self._mark(r, first[key], "exact", 1.0)
            else:
                first[key] = r
                survivors.append(r)
        return survivors

    def _minhash(self, ordered: list[Record], threshold: float, seed: int) -> list[Record]:
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=128)
        kept: dict[str, tuple[Record, set[str]]] = {}
        survivors = []
        grams_of = [shingles(r.text or "") for r in ordered]
        grams_bytes = ([g.encode() for g in grams] for grams in grams_of)
        hashes = MinHash.generator(grams_bytes, num_perm=128, seed=seed % 2**32)
        for r, grams, mh in zip(ordered, grams_of, hashes):  # the generator reuses one permutation set
            best, best_sim = None, 0.0
            for cand in lsh.query(mh):
                sim = jaccard(grams, kept[cand][1])  # exact check: a bucket collision alone never counts
                if sim > best_sim:
                    best, best_sim = kept[cand][0], sim
            if best is not None and best_sim >= threshold:
                self._mark(r, best, "minhash", best_sim)
                continue
            lsh.insert(r.id, mh)
            kept[r.id] = (r, grams)
            survivors.append(r)
        return survivors

    def _semantic(self, ordered: list[Record], threshold: float, seed: int) -> None:
        if not ordered or self.embedder is None:
            return
        vectors = self.embedder([r.text or "" for r in ordered])
        for r, v in zip(ordered, vectors):
            self.vectors[r.id] = v
        for i, j, sim in semantic_duplicates(vectors, threshold, seed):
            self._mark(ordered[i], ordered[j], "semantic", sim)


def pipeline_seed_of(records: list[Record]) -> int:
    """A seed for MinHash permutations and the k-means of large dedups, derived from the pipeline
    seed: every record's generation seed is derived from it (and the record id), so their
    smallest is too; records that were never generated give 0."""
    return min((int(r.generation.get("seed", 0)) for r in records), default=0)


def semantic_duplicates(vectors: np.ndarray, threshold: float, seed: int = 0) -> list[tuple[int, int, float]]:
    """(duplicate row, kept row, cosine) for unit `vectors` visited in row order.

    A row is a duplicate of its most similar earlier row that was itself kept; an earlier row's
    verdict is final before any later row is looked at, so there are no chains.
    """
    later, earlier, sims = similar_pairs(vectors, threshold, seed=seed)
    order = np.lexsort((-sims, later))
    kept = [True] * len(vectors)
    out = []
    current, decided = -1, False
    for a, b, sim in zip(later[order].tolist(), earlier[order].tolist(), sims[order].tolist()):
        if a != current:
            current, decided = a, False
        if not decided and kept[b]:
            kept[a], decided = False, True
            out.append((a, b, sim))
    return out


def flagged_pairs(records: list[Record]) -> list[tuple[Record, Record, str, float]]:
    """(duplicate, representative, method, similarity) for every duplicate, least similar first."""
    by_id = {r.id: r for r in records}
    pairs = [
        (
            r,
            by_id[r.reasons[0].split(":", 1)[1]],
            str(r.fields.get("dup_method")),
            r.scores.get("dup_similarity", 1.0),
        )
        for r in records
        if r.reasons and r.reasons[0].startswith("duplicate_of:")
    ]
    return sorted(pairs, key=lambda p: (p[3], p[0].id))


def rethreshold(records: list[Record], vectors: dict[str, np.ndarray], config: DedupConfig) -> list[Record]:
    """Re-run the semantic tier with stored embeddings: copies of the records with new verdicts.

    Semantic duplicates are kept again, and each exact or MinHash duplicate points at the first
    record of its chain of matches that is kept now."""
    import copy

    fresh = [copy.deepcopy(r) for r in records]
    matched = {
        c.id: c.fields.get("dup_via") or c.reasons[0].split(":", 1)[1]
        for c in fresh
        if c.reasons and c.reasons[0].startswith("duplicate_of:")
    }
    semantic = {c.id for c in fresh if c.id in matched and c.fields.get("dup_method") == "semantic"}
    by_text = {r.text: vectors[r.id] for r in records if r.id in vectors}
    stage = Dedup(
        config.model_copy(update={"exact": False, "minhash_threshold": None}),
        lambda texts: np.stack([by_text[t] for t in texts]),
    )
    for c in fresh:
        if c.id in semantic:
            c.status, c.reasons, c.cluster = "kept", [], None
            c.fields.pop("dup_via", None)
        elif c.id in matched:
            rep = matched[c.id]
            while rep in matched and rep not in semantic:
                rep = matched[rep]
            c.reasons[0], c.cluster = f"duplicate_of:{rep}", rep
            if rep == matched[c.id]:
                c.fields.pop("dup_via", None)
            else:
                c.fields["dup_via"] = matched[c.id]
            stage.members[rep].append(c)
    stage.run(fresh)
    return fresh
