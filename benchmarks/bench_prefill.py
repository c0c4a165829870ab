"""What a refill's padding and an extra forward pass cost: the two sides of `decode.length_batches`.

1. Padding: the shipped sentiment pipeline's first `--n` planned requests and their guidance
   prompts, encoded as the backend does, taken into refills of up to the batch size in the decode
   loop's order (longest prompt first, each request's guidance rows after it); per refill the
   padded prompt tokens after the common prefix as one batch and as `length_batches` splits it.
2. A pass: the default model's forward over 1, 64 and 640 tokens in bf16 and fp32, the fixed cost
   and the cost a token behind `decode.PASS_TOKENS`.

    python benchmarks/bench_prefill.py [--n 105] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from textsynth.backends.decode import PASS_TOKENS, common_prefix, length_batches
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import ModelConfig
from textsynth.hardware import cpu_class
from textsynth.models import load_model
from textsynth.pipeline import prepare

ROOT = Path(__file__).resolve().parents[1]
PASS_LENGTHS = (1, 64, 640)


def padding(n: int) -> None:
    prep = prepare(ROOT / "pipelines" / "sentiment.yaml", n=n)
    backend = TransformersBackend(prep.pipeline.model)
    labels = prep.pipeline.generation.guidance_labels  # as many other labels as a build contrasts
    units = [
        [backend.encode(prep.messages[ex.id])]
        + [backend.encode(m) for m in prep.templates.render_negatives(ex, labels)]
        for ex in prep.planned
    ]
    units.sort(key=lambda u: -len(u[0]))  # the backend's order: the longest prompts first
    plen = common_prefix([p for u in units for p in u])
    print(f"{len(units)} requests, {sum(map(len, units))} rows, common prefix {plen} tokens")
    while units:
        rows: list[list[int]] = []
        while units and len(rows) + len(units[0]) <= backend.batch_size:
            rows += units.pop(0)
        lengths = [len(p) - plen for p in rows]
        tokens = sum(lengths)
        one = len(rows) * max(lengths) - tokens
        batches = length_batches(lengths)
        split = sum(len(b) * max(lengths[i] for i in b) for b in batches) - tokens
        print(
            f"refill of {len(rows)} rows, {tokens} prompt tokens: padding {one} ({one / (one + tokens):.1%}) "
            f"in one batch, {split} ({split / (split + tokens):.1%}) in {len(batches)} length batches"
        )


def passes(repeats: int) -> None:
    for dtype in ("bfloat16", "float32"):
        model = load_model(ModelConfig(dtype=dtype)).model
        ms = {}
        with torch.inference_mode():
            for length in PASS_LENGTHS:
                ids = torch.ones(1, length, dtype=torch.long)
                model(input_ids=ids, logits_to_keep=1)  # warm-up
                start = time.perf_counter()
                for _ in range(repeats):
                    model(input_ids=ids, logits_to_keep=1)
                ms[length] = (time.perf_counter() - start) / repeats * 1000
        per_token = (ms[PASS_LENGTHS[-1]] - ms[PASS_LENGTHS[1]]) / (PASS_LENGTHS[-1] - PASS_LENGTHS[1])
        cells = ", ".join(f"{n} tokens {v:.1f} ms" for n, v in ms.items())
        print(
            f"{dtype}: {cells}; {per_token:.2f} ms a token, a pass worth {ms[1] / per_token:.0f} tokens "
            f"(PASS_TOKENS = {PASS_TOKENS})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=105, help="planned requests (the default build asks 87–105)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    padding(args.n)
    passes(args.repeats)


if __name__ == "__main__":
    main()
