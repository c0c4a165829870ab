"""What the CPU computes natively: picks `dtype: auto` and names the CPU class beside every
speed figure (bf16 kernels make a 2–3× difference, so a number without its class says little)."""

from __future__ import annotations

import functools
import platform
from pathlib import Path


@functools.cache
def _cpuinfo() -> tuple[str | None, frozenset[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo (none where it cannot be read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None, frozenset()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    flags = frozenset(f for line in lines if line.startswith("flags") for f in line.split(":", 1)[1].split())
    return name, flags


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix kernels (AMX or AVX-512 BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpuinfo()[1])


def cpu_class() -> str:
    """One of the classes speed is reported per: AMX, AVX-512 BF16, AVX2 only (or neither)."""
    name, flags = _cpuinfo()
    kind = (
        "AMX"
        if "amx_bf16" in flags
        else "AVX-512 BF16"
        if "avx512_bf16" in flags
        else "AVX2 only"
        if "avx2" in flags
        else "no AVX2"
    )
    return f"{name or platform.machine()} ({kind})"
