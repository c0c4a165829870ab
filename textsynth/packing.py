"""bf16 linear layers whose weights are packed once for oneDNN, on a CPU.

`F.linear` in bf16 on a CPU runs oneDNN, which reorders the weight into its blocked layout on
every call. A decode step of a few rows spends more time on that reorder than on the product.
Packed once at load, every layer gives the same numbers (bit for bit on the benchmark machine),
1.3–1.6× faster at the 1–24 rows of a top-up round and 1.16× at 64 (benchmarks/bench_packing.py).
"""

from __future__ import annotations

import torch
from torch import nn

# The row count oneDNN picks the packed layout for. Any row count works: 64, 128 or 256 gave the
# same speed and the same bits at 64–256 rows (benchmarks/archive/history.md, session 13).
PACK_ROWS = 64


class PackedLinear(nn.Module):
    """An `nn.Linear` (bf16) computing with a oneDNN-packed copy of its weight."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), PACK_ROWS)
        self.register_buffer("packed", packed, persistent=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")


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
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == torch.bfloat16:
                setattr(module, name, PackedLinear(child))
                swapped += 1
    return swapped
