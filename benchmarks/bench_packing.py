"""bf16 linear layers: `F.linear` against the weights packed once at load (textsynth/packing.py).

`F.linear` in bf16 on a CPU runs oneDNN, which reorders the weight into its blocked layout on
every call; textsynth packs each weight once when the model loads, and packs the projections that
share an input (query/key/value, gate/up) as one. This times the three on the embedded model's own
linear layers (one decoder layer's seven and the LM head, weighted as in a forward pass of all
layers), at the row counts a build decodes with, in one process, and checks that the outputs are
equal.

    python benchmarks/bench_packing.py [--rows 1 6 24 64 128] [--calls 40]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM

from textsynth.config import ModelConfig
from textsynth.models import identify
from textsynth.packing import PackedLinear, pack_linears


def per_call_s(fn: Callable[[], torch.Tensor], calls: int) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


# One decoder layer's linears in the order a forward pass calls them, grouped by shared input.
GROUPS = [
    ("self_attn", ("q_proj", "k_proj", "v_proj")),
    ("self_attn", ("o_proj",)),
    ("mlp", ("gate_proj", "up_proj")),
    ("mlp", ("down_proj",)),
]


def calls(modules: list[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
    return torch.cat([m(x) for m in modules], dim=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 6, 24, 64, 128])
    parser.add_argument("--calls", type=int, default=40)
    args = parser.parse_args()
    source = identify(ModelConfig(dtype="bfloat16")).source
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()
    layers = model.config.num_hidden_layers
    layer = model.model.layers[0]
    fused_layer = copy.deepcopy(layer)
    pack_linears(fused_layer)
    variants: list[tuple[list[nn.Linear], list[nn.Module], list[nn.Module], float]] = []
    for block, names in GROUPS:
        linears = [getattr(getattr(layer, block), name) for name in names]
        packed = [PackedLinear(m.weight, m.bias) for m in linears]
        variants.append((linears, packed, [getattr(getattr(fused_layer, block), n) for n in names], 1.0))
    head = PackedLinear(model.lm_head.weight, None)
    variants.append(([model.lm_head], [head], [head], 1.0 / layers))  # per decoder layer
    print(f"# one decoder layer's seven linears + LM head / {layers}; {torch.get_num_threads()} threads")
    header = ("rows", "F.linear ms", "packed ms", "fused ms", "ratio", "fused")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 12, 10, 9, 7, 7))), " equal")
    with torch.inference_mode():
        for rows in args.rows:
            plain_s = packed_s = fused_s = 0.0
            equal = True
            for linears, packed, fused, w in variants:
                x = torch.randn(rows, linears[0].in_features, dtype=torch.bfloat16)
                unpacked = [partial(F.linear, weight=m.weight, bias=m.bias) for m in linears]
                plain_s += w * per_call_s(partial(calls, unpacked, x), args.calls)
                packed_s += w * per_call_s(partial(calls, packed, x), args.calls)
                fused_s += w * per_call_s(partial(calls, fused, x), args.calls)
                want = calls(unpacked, x)
                equal &= torch.equal(want, calls(packed, x)) and torch.equal(want, calls(fused, x))
            print(
                f"{rows:>5} {plain_s * 1e3:>12.3f} {packed_s * 1e3:>10.3f} {fused_s * 1e3:>9.3f}"
                f" {plain_s / packed_s:>6.2f}× {plain_s / fused_s:>6.2f}×  {equal}"
            )


if __name__ == "__main__":
    main()
