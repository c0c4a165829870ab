"""Every pair of unit vectors with cosine ≥ a threshold, without an n×n matrix.

Up to `exact_up_to` rows the scan is exact: row blocks multiplied with the rows before them.
Above, an inverted file whose scan is one matrix product per list: faiss spherical k-means
splits the rows into √n lists, each row probes its `nprobe` nearest lists, and the rows probing
a list are multiplied with its members in one BLAS call. faiss' own IVF range search scans one
query at a time and was 6× slower on 100k×384 here (benchmarks/archive/history.md). A pair counts when
either row probes the other's list, so recall is above a plain IVF search at the same nprobe.
"""

from __future__ import annotations

import numpy as np
import torch

BLOCK = 1 << 22  # entries of one similarity block (16 MiB in fp32)


def _above(queries: np.ndarray, members: np.ndarray, vectors: torch.Tensor, threshold: float):
    """(query row, member row, cosine) of every pair in the block at or above the threshold."""
    block = vectors[torch.from_numpy(queries)] @ vectors[torch.from_numpy(members)].T
    qi, mi = torch.nonzero(block >= threshold, as_tuple=True)
    return queries[qi.numpy()], members[mi.numpy()], block[qi, mi].numpy()


def _exact(vectors: torch.Tensor, threshold: float):
    n = len(vectors)
    step = max(1, BLOCK // max(n, 1))
    rows = np.arange(n)
    for start in range(0, n, step):
        yield _above(rows[start : start + step], rows[: start + step], vectors, threshold)


def _ivf(vectors: torch.Tensor, threshold: float, nprobe: int, seed: int):
    import faiss

    n, d = vectors.shape
    nlist = max(1, int(np.sqrt(n)))
    nprobe = min(nprobe, nlist)
    flat = vectors.numpy()
    kmeans = faiss.Kmeans(d, nlist, niter=10, seed=seed % 2**31, spherical=True, min_points_per_centroid=1)
    rng = np.random.default_rng(seed)
    kmeans.train(flat[rng.choice(n, size=min(n, 32 * nlist), replace=False)])
    centroids = torch.from_numpy(kmeans.centroids)
    step = max(1, BLOCK // nlist)
    probes = torch.cat([torch.topk(c @ centroids.T, nprobe, dim=1).indices for c in vectors.split(step)])
    probes = probes.numpy()
    home = probes[:, 0]
    members = np.argsort(home, kind="stable")
    member_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    by_list = np.argsort(probes.ravel(), kind="stable")
    query_rows = by_list // nprobe
    query_bounds = np.searchsorted(probes.ravel()[by_list], np.arange(nlist + 1))
    for c in range(nlist):
        m = members[member_bounds[c] : member_bounds[c + 1]]
        q = query_rows[query_bounds[c] : query_bounds[c + 1]]
        if len(m) == 0:
            continue
        step = max(1, BLOCK // len(m))
        for start in range(0, len(q), step):
            yield _above(q[start : start + step], m, vectors, threshold)


def similar_pairs(
    vectors: np.ndarray, threshold: float, exact_up_to: int = 20_000, nprobe: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(later row, earlier row, cosine) of each distinct pair at or above the threshold, by later row."""
    tensor = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    n = len(tensor)
    blocks = _exact(tensor, threshold) if n <= exact_up_to else _ivf(tensor, threshold, nprobe, seed)
    later, earlier, sims = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for a, b, s in blocks:
        keep = a != b
        later.append(np.maximum(a, b)[keep])
        earlier.append(np.minimum(a, b)[keep])
        sims.append(s[keep])
    a, b, s = np.concatenate(later), np.concatenate(earlier), np.concatenate(sims)
    _, first = np.unique(a * n + b, return_index=True)
    return a[first], b[first], s[first]
