"""bf16 linear layers packed once at load (textsynth/packing.py): the same model, computed faster.

The reference is the same dense copy as transformers loads it, unpacked. Every bf16 build in the
suite decodes through the packed layers; the speed is measured by benchmarks/bench_generate.py
(textsynth_backend against textsynth_backend_unpacked).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from textsynth.config import ModelConfig
from textsynth.models import identify, load_model
from textsynth.packing import PackedLinear, can_pack

TEXTS = ["Write a short review of a tent.", "The soup was cold and the waiter never came back, sadly."]


def _unpacked() -> nn.Module:
    source = identify(ModelConfig(dtype="bfloat16")).source
    return AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()


def test_bf16_model_on_cpu_has_every_linear_packed_and_the_same_logits():
    assert can_pack(), "this CPU has oneDNN bf16 kernels: packing must be on"
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


def test_fp32_models_are_left_unpacked():
    model = load_model(ModelConfig(dtype="float32")).model
    assert not any(type(m) is PackedLinear for m in model.modules())
