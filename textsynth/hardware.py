"""What the CPU computes natively: picks `dtype: auto` and names the CPU class beside every
speed figure (bf16 kernels make a 2–3× difference, so a number without its class says little).

The class is what torch's kernels may use, not only what the chip has: the documented switches
`ATEN_CPU_CAPABILITY`, `ONEDNN_MAX_CPU_ISA` and `MKL_ENABLE_INSTRUCTIONS` cap them. An AMX Xeon
with oneDNN capped at AVX512_CORE_BF16 computes as an AVX-512 BF16 CPU does, and with all three
capped at AVX2 as an AVX2-only one (the benchmarks measure those classes this way)."""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# Values of each switch that leave torch's kernels below what a bf16 CPU has: AVX2 or less, or
# (oneDNN only) AVX-512 without bf16, or bf16 without AMX.
_AVX2 = {
    "ATEN_CPU_CAPABILITY": {"default", "avx2"},
    "ONEDNN_MAX_CPU_ISA": {"sse41", "avx", "avx2", "avx2_vnni"},
    "MKL_ENABLE_INSTRUCTIONS": {"sse4_2", "avx", "avx2"},
}
_ONEDNN_NO_BF16 = _AVX2["ONEDNN_MAX_CPU_ISA"] | {"avx512_core", "avx512_core_vnni"}
_ONEDNN_NO_AMX = {"avx512_core_bf16", "avx512_core_fp16", "avx10_1_512"}


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


def _cap(key: str) -> str:
    return os.environ.get(key, "").strip().lower()


def isa_caps() -> dict[str, str]:
    """The switches set here that keep torch's kernels below the chip's bf16 or AMX units."""
    capping = {**_AVX2, "ONEDNN_MAX_CPU_ISA": _ONEDNN_NO_BF16 | _ONEDNN_NO_AMX}
    return {key: os.environ[key] for key, values in capping.items() if _cap(key) in values}


def cpu_supports_bf16() -> bool:
    """Native bf16 matrix kernels (AMX or AVX-512 BF16) that oneDNN is allowed to use."""
    return (
        bool({"avx512_bf16", "amx_bf16"} & _cpuinfo()[1])
        and _cap("ONEDNN_MAX_CPU_ISA") not in _ONEDNN_NO_BF16
    )


def cpu_class() -> str:
    """One of the classes speed is reported per: AMX, AVX-512 BF16, AVX2 only (or neither)."""
    name, flags = _cpuinfo()
    caps = isa_caps()
    capped_to_avx2 = all(_cap(key) in values for key, values in _AVX2.items())
    kind = (
        "AVX2 only"
        if "avx2" in flags and (capped_to_avx2 or not {"avx512_bf16", "amx_bf16"} & flags)
        else "AVX-512 BF16"
        if "avx512_bf16" in flags
        and ("amx_bf16" not in flags or _cap("ONEDNN_MAX_CPU_ISA") in _ONEDNN_NO_AMX)
        else "AMX"
        if "amx_bf16" in flags
        else "no AVX2"
    )
    capped = ", ".join(f"{key}={value}" for key, value in caps.items())
    return f"{name or platform.machine()} ({kind}{f'; kernels capped by {capped}' if capped else ''})"
