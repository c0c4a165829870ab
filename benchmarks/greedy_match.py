"""Greedy decoding: how often does textsynth's decode loop match a live `model.generate`?

In fp32 the tests demand token-for-token identity. In bf16, batching changes the order of
floating-point sums, so a near-tie between two tokens can flip; this reports the match rate
(prompts whose whole completion is identical, and the mean share of the reference completion's
characters before the first difference).
"""

from __future__ import annotations

import argparse
import json

import torch

from textsynth.backends.base import Request
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import GenerationParams, ModelConfig

PRODUCTS = [
    "blender",
    "laptop",
    "tent",
    "kettle",
    "novel",
    "phone",
    "desk lamp",
    "backpack",
    "toaster",
    "camera",
]
LABELS = ["positive", "negative", "neutral"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    backend = TransformersBackend(ModelConfig(dtype=args.dtype, batch_size=args.n))
    requests = [
        Request(
            f"r{i}",
            [
                {
                    "role": "user",
                    "content": f"Write one short {LABELS[i % 3]} customer review about a "
                    f"{PRODUCTS[i % len(PRODUCTS)]}. Output only the review.",
                }
            ],
            i,
        )
        for i in range(args.n)
    ]
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0)
    ours = {c.id: c.text for c in backend.generate(requests, params)}
    model, tok = backend.loaded.model, backend.loaded.tokenizer
    identical = 0
    prefix = 0.0
    for req in requests:
        ids = torch.tensor([backend.encode(req.messages)])
        ref = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=args.max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )[0, ids.shape[1] :]
        theirs = tok.decode(ref, skip_special_tokens=True)
        identical += theirs == ours[req.id]
        same = next((k for k, (a, b) in enumerate(zip(theirs, ours[req.id])) if a != b), len(theirs))
        prefix += min(same, len(theirs)) / max(len(theirs), 1)
    print(
        json.dumps(
            {
                "dtype": args.dtype,
                "prompts": args.n,
                "identical": identical,
                "match_rate": round(identical / args.n, 4),
                "mean_identical_prefix": round(prefix / args.n, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
