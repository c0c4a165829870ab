"""bf16 linear layers whose weights are packed once for oneDNN, on a CPU.

`F.linear` in bf16 on a CPU runs oneDNN, which reorders the weight into its blocked layout on
every call. A decode step of a few rows spends more time on that reorder than on the product.
Packed once at load, every layer gives the same numbers (bit for bit on the benchmark machine),
1.3–1.6× faster at the 1–24 rows of a top-up round and 1.16× at 64 (benchmarks/bench_packing.py).

Sibling projections that read the same input (query/key/value, gate/up) are packed as one weight
and computed in one call, as vLLM's merged linear layers do: each output column is the same dot
product, so the numbers do not change, and a decoder layer makes four products instead of seven.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# The row count oneDNN picks the packed layout for: the default batch size. Any row count works.
PACK_ROWS = 64


class PackedLinear(nn.Module):
    """An `nn.Linear` (bf16) computing with a oneDNN-packed copy of its weight."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS)
        self.register_buffer("packed", packed, persistent=False)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")


class FusedLinears(nn.Module):
    """Sibling bf16 linear layers that read the same input, packed as one weight.

    The first part called with an input computes every part's output in one product; the others
    take their slice if they are called with the same tensor (unchanged, where autograd tracks its
    version; inference tensors carry none), and once all have, nothing is held. A part called with
    another input computes the product again, so any call order stays correct.
    """

    def __init__(self, linears: list[nn.Linear]) -> None:
        super().__init__()
        weight = torch.cat([lin.weight.detach() for lin in linears])
        bias = None if linears[0].bias is None else torch.cat([lin.bias.detach() for lin in linears])
        self.joint = PackedLinear(weight, bias)
        self.sizes = [lin.out_features for lin in linears]
        self.last = _LastCall()  # a plain object: nn.Module's attribute setter costs µs per call

    def part(self, index: int, x: torch.Tensor) -> torch.Tensor:
        last, version = self.last, -1 if x.is_inference() else x._version
        if last.input is not x or last.version != version:
            last.input, last.version = x, version
            last.outputs = list(self.joint(x).split(self.sizes, dim=-1))
            last.pending = len(self.sizes)
        out = last.outputs[index]
        last.pending -= 1
        if last.pending == 0:  # every part has its slice: hold on to nothing between steps
            last.input, last.outputs = None, []
        return out


@dataclass
class _LastCall:
    """A `FusedLinears`' last input and the slices its parts have yet to take."""

    input: torch.Tensor | None = None
    version: int = 0
    outputs: list[torch.Tensor] = field(default_factory=list)
    pending: int = 0


class FusedPart(nn.Module):
    """One projection's slice of a `FusedLinears`, in its original place in the model."""

    def __init__(self, fused: FusedLinears, index: int) -> None:
        super().__init__()
        self.in_features, self.out_features = fused.joint.in_features, fused.sizes[index]
        self.index = index
        object.__setattr__(self, "fused", fused)  # shared by the siblings: not a submodule of each

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fused.part(self.index, x)


# Sibling projections that every forward pass feeds the same input (Llama, Mistral, Qwen, Gemma, …).
FUSE = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


def can_pack() -> bool:
    """oneDNN with bf16 kernels, and the packing ops this torch build exposes."""
    try:
        return bool(
            torch.backends.mkldnn.is_available()
            and torch.ops.mkldnn._is_mkldnn_bf16_supported()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        )
    except (AttributeError, RuntimeError):  # an op this torch build lacks
        return False


def pack_linears(model: nn.Module) -> int:
    """Swap every bf16 `nn.Linear` of a CPU model for a `PackedLinear`; how many were swapped.

    The unpacked weights are released, except those another module shares (a tied embedding).
    """
    if not can_pack():
        return 0
    swapped = 0
    for module in list(model.modules()):
        for names in FUSE:
            siblings = [getattr(module, name, None) for name in names]
            if _fusable(siblings):
                fused = FusedLinears(siblings)  # type: ignore[arg-type]
                module.add_module("fused_" + "_".join(names), fused)
                for index, name in enumerate(names):
                    setattr(module, name, FusedPart(fused, index))
                swapped += len(names)
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == torch.bfloat16:
                setattr(module, name, PackedLinear(child.weight, child.bias))
                swapped += 1
    return swapped


def _fusable(siblings: list[nn.Module | None]) -> bool:
    """Plain bf16 linear layers with one input size, all with a bias or all without."""
    if not all(type(m) is nn.Linear for m in siblings):
        return False
    linears = [m for m in siblings if isinstance(m, nn.Linear)]
    return (
        all(m.weight.dtype == torch.bfloat16 for m in linears)
        and len({m.in_features for m in linears}) == 1
        and len({m.bias is None for m in linears}) == 1
    )
