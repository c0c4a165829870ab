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
from textsynth.packing import FusedLinears, FusedPart, PackedLinear, can_pack

TEXTS = ["Write a short review of a tent.", "The soup was cold and the waiter never came back, sadly."]


def _unpacked() -> nn.Module:
    source = identify(ModelConfig(dtype="bfloat16")).source
    return AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).eval()


def test_bf16_model_on_cpu_has_every_linear_packed_and_the_same_logits():
    assert can_pack(), "this CPU has oneDNN bf16 kernels: packing must be on"
    loaded = load_model(ModelConfig(dtype="bfloat16"))
    model, plain = loaded.model, _unpacked()
    linears = sum(type(m) is nn.Linear for m in plain.modules())
    fused = sum(type(m) is FusedPart for m in model.modules())
    layers = model.config.num_hidden_layers
    assert fused == 5 * layers, "query/key/value and gate/up of every decoder layer are fused"
    assert sum(type(m) is PackedLinear for m in model.modules()) == linears - fused + 2 * layers
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


def _linears(sizes: list[int], bias: bool) -> list[nn.Linear]:
    torch.manual_seed(0)
    return [nn.Linear(48, size, bias=bias).to(torch.bfloat16) for size in sizes]


def test_fused_parts_give_each_projection_its_own_output_bit_for_bit():
    for bias in (False, True):
        linears = _linears([32, 16, 16], bias)
        fused = FusedLinears(linears)
        parts = [FusedPart(fused, i) for i in range(3)]
        x = torch.randn(5, 48, dtype=torch.bfloat16)
        with torch.inference_mode():
            want = [PackedLinear(lin.weight, lin.bias)(x) for lin in linears]
            got = [part(x) for part in parts]
        assert all(torch.equal(g, w) for g, w in zip(got, want))
        assert fused.last.input is None, "once every part has its slice, nothing is held between calls"


def test_a_fused_part_recomputes_for_another_input_or_an_input_changed_in_place():
    linears = _linears([32, 16], bias=False)
    fused = FusedLinears(linears)
    first, second = FusedPart(fused, 0), FusedPart(fused, 1)
    x, y = torch.randn(3, 48, dtype=torch.bfloat16), torch.randn(3, 48, dtype=torch.bfloat16)
    with torch.no_grad():  # tensors made here carry a version counter (inference tensors do not)
        first(x)
        assert torch.equal(second(y), PackedLinear(linears[1].weight, None)(y))
        first(x)
        x.mul_(2)  # the same tensor, changed: its version moves on
        assert torch.equal(second(x), PackedLinear(linears[1].weight, None)(x))
