"""What the CPU computes natively: picks `dtype: auto` and names the CPU class beside every
speed figure (bf16 kernels make a 2–3× difference, so a number without its class says little).

The class is what torch's kernels may use, not only what the chip has: the documented switches
`ATEN_CPU_CAPABILITY`, `ONEDNN_MAX_CPU_ISA` and `MKL_ENABLE_INSTRUCTIONS` cap them, and a capped
AMX Xeon computes as an AVX2-only CPU does (the benchmarks use this to measure that class)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# Values of the three switches that leave only AVX2 (or less) to torch's kernels.
_AVX2_CAPS = {
    "ATEN_CPU_CAPABILITY": {"default", "avx2"},
    "ONEDNN_MAX_CPU_ISA": {"sse41", "avx", "avx2", "avx2_vnni"},
    "MKL_ENABLE_INSTRUCTIONS": {"sse4_2", "avx", "avx2"},
}


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


def isa_caps() -> dict[str, str]:
    """The switches set here that cap torch's kernels at AVX2 or below."""
    return {
        key: os.environ[key]
        for key, capped in _AVX2_CAPS.items()
        if os.environ.get(key, "").strip().lower() in capped
    }


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix kernels (AMX or AVX-512 BF16) that oneDNN is allowed to use."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpuinfo()[1]) and "ONEDNN_MAX_CPU_ISA" not in isa_caps()


def cpu_class() -> str:
    """One of the classes speed is reported per: AMX, AVX-512 BF16, AVX2 only (or neither)."""
    name, flags = _cpuinfo()
    caps = isa_caps()
    kind = (
        "AVX2 only"
        if "avx2" in flags and caps.keys() == _AVX2_CAPS.keys()
        else "AMX"
        if "amx_bf16" in flags
        else "AVX-512 BF16"
        if "avx512_bf16" in flags
        else "AVX2 only"
        if "avx2" in flags
        else "no AVX2"
    )
    capped = ", ".join(f"{key}={value}" for key, value in caps.items())
    return f"{name or platform.machine()} ({kind}{f'; kernels capped by {capped}' if capped else ''})"
