"""What the CPU computes natively: picks `dtype: auto` and names the CPU class beside every
speed figure (bf16 kernels make a 2–3× difference, so a number without its class says little)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    return frozenset(
        flag
        for line in text.splitlines()
        if line.startswith("flags")
        for flag in line.split(":", 1)[1].split()
    )


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix kernels (AMX or AVX-512 BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def cpu_class() -> str:
    """One of the classes speed is reported per: AMX, AVX-512 BF16, AVX2 only (or neither)."""
    flags = _cpu_flags()
    kind = (
        "AMX"
        if "amx_bf16" in flags
        else "AVX-512 BF16"
        if "avx512_bf16" in flags
        else "AVX2 only"
        if "avx2" in flags
        else "no AVX2"
    )
    name = _model_name() or platform.machine()
    return f"{name} ({kind})"


def _model_name() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
