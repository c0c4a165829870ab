"""The decode loop against a live `model.generate` on the same prompts, and seeded sampling."""

from __future__ import annotations

import torch

from textsynth.backends.base import Request
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import GenerationParams, ModelConfig

PRODUCTS = ["blender", "laptop", "tent", "kettle", "novel", "phone", "desk lamp"]


def _requests() -> list[Request]:
    return [
        Request(
            f"r{i}",
            [
                {
                    "role": "user",
                    "content": f"Write one short {'positive' if i % 2 else 'negative'} "
                    f"customer review about a {p}. Output only the review.",
                }
            ],
            1000 + i,
        )
        for i, p in enumerate(PRODUCTS)
    ]


def test_fp32_greedy_matches_generate_token_for_token():
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=4))
    params = GenerationParams(max_new_tokens=32, temperature=0)
    ours = {c.id: c for c in backend.generate(_requests(), params)}
    model, tok = backend.loaded.model, backend.loaded.tokenizer
    for req in _requests():
        ids = torch.tensor([backend.encode(req.messages)])
        ref = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=32,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )[0, ids.shape[1] :].tolist()
        ended = ref[-1] in backend.eos.tolist()
        assert ours[req.id].tokens == len(ref)
        assert ours[req.id].finish_reason == ("stop" if ended else "length")
        assert ours[req.id].text == tok.decode(ref[:-1] if ended else ref, skip_special_tokens=True)


def test_sampling_independent_of_batch_composition():
    backend = TransformersBackend(ModelConfig(dtype="float32", batch_size=7))
    params = GenerationParams(max_new_tokens=24, temperature=0.9)
    together = {c.id: c.text for c in backend.generate(_requests(), params)}
    backend.batch_size = 2
    apart = {c.id: c.text for c in backend.generate(_requests()[::-1], params)}
    assert together == apart
    assert len(set(together.values())) == len(PRODUCTS)  # sampling, not one fixed output
