"""bf16 linear layers: `F.linear` against the weights packed once at load (textsynth/packing.py).

`F.linear` in bf16 on a CPU runs oneDNN, which reorders the weight into its blocked layout on
every call; textsynth packs each weight once when the model loads. This times both on the
embedded model's own linear layers (one decoder layer's seven and the LM head, weighted as in a
forward pass of all layers), at the row counts a build decodes with, in one process, and checks
that the outputs are equal.

    python benchmarks/bench_packing.py [--rows 1 6 24 64 128] [--calls 40]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM

from textsynth.config import ModelConfig
from textsynth.hardware import cpu_class
from textsynth.models import identify
from textsynth.packing import PackedLinear


def per_call_s(fn: Callable[[], torch.Tensor], calls: int) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def main() -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 6, 24, 64, 128])
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    source = identify(ModelConfig(dtype="bfloat16")).source
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()
    layers = model.config.num_hidden_layers
    first = [m for m in model.model.layers[0].modules() if type(m) is nn.Linear]
    weighted = [(m, 1.0) for m in first] + [(model.lm_head, 1.0 / layers)]  # per decoder layer
    packed = [PackedLinear(m) for m, _ in weighted]
    print(
        f"# {len(first)} linears of one decoder layer + LM head / {layers}; {torch.get_num_threads()} threads"
    )
    print(f"{'rows':>5} {'F.linear ms':>12} {'packed ms':>10} {'ratio':>7}  equal")
    with torch.inference_mode():
        for rows in args.rows:
            plain_s = packed_s = 0.0
            equal = True
            for (linear, w), pack in zip(weighted, packed):
                x = torch.randn(rows, linear.in_features, dtype=torch.bfloat16)
                plain_s += w * per_call_s(partial(F.linear, x, linear.weight), args.calls)
                packed_s += w * per_call_s(partial(pack, x), args.calls)
                equal &= torch.equal(F.linear(x, linear.weight), pack(x))
            ratio = plain_s / packed_s
            print(f"{rows:>5} {plain_s * 1e3:>12.3f} {packed_s * 1e3:>10.3f} {ratio:>6.2f}×  {equal}")


if __name__ == "__main__":
    main()
