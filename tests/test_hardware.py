"""The CPU class and `dtype: auto` follow what torch's kernels may use: a Xeon whose kernels are
capped by the documented switches computes, picks its dtype and reports itself as the lesser CPU."""

from __future__ import annotations

import pytest

from textsynth.hardware import _cpuinfo, cpu_class, cpu_supports_bf16, isa_caps
from textsynth.models import resolve_dtype

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@pytest.fixture
def uncapped(monkeypatch):
    for key in AVX2:
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_capping_every_kernel_library_at_avx2_makes_this_cpu_an_avx2_only_one(uncapped):
    if "avx2" not in _cpuinfo()[1]:
        pytest.skip("this CPU has no AVX2")
    for key, value in AVX2.items():
        uncapped.setenv(key, value)
    assert isa_caps() == AVX2
    assert not cpu_supports_bf16()
    assert resolve_dtype("auto") == "float32"
    assert "(AVX2 only; kernels capped by ATEN_CPU_CAPABILITY=avx2" in cpu_class()


def test_a_cap_on_one_library_is_named_but_only_onednn_s_turns_bf16_off(uncapped):
    uncapped.setenv("ATEN_CPU_CAPABILITY", "avx2")
    native = bool({"avx512_bf16", "amx_bf16"} & _cpuinfo()[1])
    assert cpu_supports_bf16() is native
    assert cpu_class().endswith("; kernels capped by ATEN_CPU_CAPABILITY=avx2)")
    uncapped.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert not cpu_supports_bf16()
    uncapped.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert isa_caps() == {"ATEN_CPU_CAPABILITY": "avx2"}
    assert cpu_supports_bf16() is native


def test_onednn_capped_below_amx_makes_an_amx_cpu_an_avx512_bf16_one_that_keeps_bf16(uncapped):
    if "amx_bf16" not in _cpuinfo()[1]:
        pytest.skip("this CPU has no AMX to cap")
    assert "(AMX)" in cpu_class()
    uncapped.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert cpu_supports_bf16()
    assert resolve_dtype("auto") == "bfloat16"
    assert "(AVX-512 BF16; kernels capped by ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16)" in cpu_class()
