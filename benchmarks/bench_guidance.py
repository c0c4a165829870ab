"""What classifier-free guidance costs, whole and for the first tokens only, in one run.

The shipped sentiment pipeline's first `--n` planned requests (its own templates and seeds) are
generated on the embedded model without guidance (γ = 1), with guidance on every token (γ = 2),
and with guidance on the first `--tokens` tokens only (γ = 2, `guidance_tokens`), alternating over
`--repeats` rounds in one process. Prints examples/s and generated tokens/s of each (median over
rounds) and the time ratio against γ = 1.

    python benchmarks/bench_guidance.py [--n 64] [--tokens 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from textsynth.backends.base import Request
from textsynth.backends.transformers import TransformersBackend
from textsynth.hardware import cpu_class
from textsynth.pipeline import prepare

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    prep = prepare(ROOT / "pipelines" / "sentiment.yaml", n=args.n)
    base = prep.pipeline.generation.model_copy(update={"guidance_scale": 1.0, "guidance_tokens": None})
    modes = {
        "γ = 1 (off)": base,
        "γ = 2, every token": base.model_copy(update={"guidance_scale": 2.0}),
        f"γ = 2, first {args.tokens} tokens": base.model_copy(
            update={"guidance_scale": 2.0, "guidance_tokens": args.tokens}
        ),
    }
    requests = [
        Request(
            ex.id,
            prep.messages[ex.id],
            ex.seed,
            prep.templates.render_negatives(ex, prep.pipeline.generation.guidance_labels),
        )
        for ex in prep.planned
    ]
    backend = TransformersBackend(prep.pipeline.model)
    print(
        f"{platform.processor() or platform.machine()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {backend.dtype}, {len(requests)} requests, "
        f"batch {backend.batch_size}, max {base.max_new_tokens} new tokens"
    )
    list(backend.generate(requests[:4], base))  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    tokens: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, params in modes.items():
            start = time.perf_counter()
            done = list(backend.generate(requests, params))
            seconds[name].append(time.perf_counter() - start)
            tokens[name] = sum(c.tokens for c in done)
    first = statistics.median(seconds[next(iter(modes))])
    print(f"\n{'mode':28s} {'s':>7s} {'ex/s':>6s} {'tok/s':>7s} {'time vs γ = 1':>14s}")
    for name in modes:
        s = statistics.median(seconds[name])
        print(f"{name:28s} {s:7.1f} {len(requests) / s:6.2f} {tokens[name] / s:7.1f} {s / first:13.2f}×")


if __name__ == "__main__":
    main()
