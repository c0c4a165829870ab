"""Seeded top-k → top-p → Gumbel-max sampling, against its definition over the whole vocabulary."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from textsynth.backends.sampling import gumbel_noise, sample_next
from textsynth.config import GenerationParams


def _reference(logits: torch.Tensor, seeds: np.ndarray, steps: np.ndarray, params: GenerationParams):
    """Temperature over the whole vocabulary first, then top-k, top-p and the same noise."""
    scaled = logits.float() / params.temperature
    values, index = torch.topk(scaled, params.top_k, dim=-1)
    probs = values.softmax(dim=-1)
    values = values.masked_fill(probs.cumsum(dim=-1) - probs > params.top_p, float("-inf"))
    noise = gumbel_noise(seeds, steps, values.shape[-1])
    return index.gather(-1, (values + noise).argmax(dim=-1, keepdim=True)).squeeze(-1), index, values


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("temperature", [0.3, 0.8, 1.5])
def test_sampling_equals_temperature_over_the_whole_vocabulary(dtype, temperature):
    gen = torch.Generator().manual_seed(3)
    logits = (torch.randn(32, 5000, generator=gen) * 4).to(dtype)  # bf16: many exact ties
    seeds = np.arange(32, dtype=np.uint64) * 7919
    steps = np.arange(32, dtype=np.uint64) % 5
    params = GenerationParams(temperature=temperature, top_k=50, top_p=0.9)
    ours = sample_next(logits, seeds, steps, params)
    ref, index, values = _reference(logits, seeds, steps, params)
    assert torch.equal(ours, ref)
    nucleus = [set(index[i][values[i] > float("-inf")].tolist()) for i in range(32)]
    assert all(t in allowed for t, allowed in zip(ours.tolist(), nucleus))
    assert len(set(ours.tolist())) > 16, "rows sample their own tokens"
