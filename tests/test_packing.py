"""bf16 linear layers packed once at load (textsynth/packing.py): the same model, computed faster.

The reference is the same dense copy as transformers loads it, unpacked. Every bf16 build in the
suite decodes through the packed layers; the speed is measured by benchmarks/bench_generate.py
(textsynth_backend against textsynth_backend_unpacked).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from textsynth import packing
from textsynth.config import ModelConfig
from textsynth.models import identify, load_model
from textsynth.packing import PackedLinear, can_pack, pack_linears

TEXTS = ["Write a short review of a tent.", "The soup was cold and the waiter never came back, sadly."]


def _unpacked() -> nn.Module:
    source = identify(ModelConfig(dtype="bfloat16")).source
    return AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()


def test_bf16_model_on_cpu_has_every_linear_packed_and_the_same_logits():
    if not can_pack():  # AVX2-only CPUs: `dtype: auto` runs fp32 there; the next test covers the path
        pytest.skip("this CPU has no oneDNN bf16 kernels: bf16 models stay unpacked here")
    loaded = load_model(ModelConfig(dtype="bfloat16"))
    model, plain = loaded.model, _unpacked()
    linears = sum(type(m) is nn.Linear for m in plain.modules())
    assert sum(type(m) is PackedLinear for m in model.modules()) == linears > 0
    assert not any(type(m) is nn.Linear for m in model.modules())
    batch = loaded.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        packed_logits, plain_logits = model(**batch).logits.float(), plain(**batch).logits.float()
    # bit for bit on the benchmark machine; another CPU's oneDNN may order the sums differently
    assert (packed_logits - plain_logits).abs().max() <= 0.125
    assert torch.equal(packed_logits.argmax(-1), plain_logits.argmax(-1))


def test_without_bf16_kernels_a_bf16_model_stays_unpacked_and_computes(monkeypatch):
    """The path every CPU without oneDNN bf16 kernels takes (forced here: the kernels' absence is
    a property of the machine, not something a test can produce otherwise)."""
    monkeypatch.setattr(packing, "can_pack", lambda: False)
    model = _unpacked()
    linears = sum(type(m) is nn.Linear for m in model.modules())
    assert pack_linears(model) == 0
    assert sum(type(m) is nn.Linear for m in model.modules()) == linears > 0
    batch = load_model(ModelConfig(dtype="float32")).tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.inference_mode():
        assert torch.isfinite(model(**batch).logits.float()).all()


def test_fp32_models_are_left_unpacked():
    model = load_model(ModelConfig(dtype="float32")).model
    assert not any(type(m) is PackedLinear for m in model.modules())
