"""Top-k → top-p → Gumbel-max sampling with noise that depends only on (seed, step, rank).

Because each row's noise is a hash of its own seed, a record samples the same tokens whichever
other prompts share its batch, so a resumed build regenerates exactly what an uninterrupted one
would have. Restricting to the top-k candidates first avoids sorting the whole vocabulary.
"""

from __future__ import annotations

import numpy as np
import torch

from textsynth.config import GenerationParams

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def gumbel_noise(seeds: np.ndarray, steps: np.ndarray, width: int) -> torch.Tensor:
    """Gumbel(0, 1) noise of shape (rows, width), a pure function of (seed, step, column)."""
    with np.errstate(over="ignore"):
        counter = steps.astype(np.uint64)[:, None] * np.uint64(width) + np.arange(width, dtype=np.uint64)
        bits = _splitmix64(_splitmix64(seeds.astype(np.uint64)[:, None]) ^ counter)
    uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    return torch.from_numpy(-np.log(-np.log(uniform))).float()


def sample_next(
    logits: torch.Tensor, seeds: np.ndarray, steps: np.ndarray, params: GenerationParams
) -> torch.Tensor:
    """Next token ids (rows,) from logits (rows, vocab); `steps` is each row's token index."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float()
    if 0 < params.top_k < logits.shape[-1]:
        values, index = torch.topk(logits, params.top_k, dim=-1)
    else:
        values, index = torch.sort(logits, dim=-1, descending=True)
    # temperature after top-k: it keeps the order, and k values per row are divided, not the
    # whole vocabulary (1.2 % of a profiled decode at 64 rows)
    values = values / params.temperature
    if params.top_p < 1:
        probs = values.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs
        values = values.masked_fill(before > params.top_p, float("-inf"))
    noise = gumbel_noise(seeds, steps, values.shape[-1]).to(values.device)
    choice = (values + noise).argmax(dim=-1, keepdim=True)
    return index.gather(-1, choice).squeeze(-1)
