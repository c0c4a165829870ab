"""`--executor ray` on a local Ray instance (2 actors, one model each): fp32 greedy decoding gives
the same dataset as the single-process build, through the same shards and cache, and one actor
pool serves the whole build."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import load_from_disk

from textsynth.backends.base import Request
from textsynth.backends.ray import RayBackend
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import ExecutorConfig, GenerationParams, ModelConfig
from textsynth.errors import ConfigError
from textsynth.models import model_loads
from textsynth.pipeline import run_build

pytestmark = pytest.mark.slow  # whole builds, servers or subprocesses: not in the everyday tier


@pytest.fixture
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_build_equals_single_process(read_only_greedy, reference, tmp_path, ray_local):
    """`reference` is the single-process build of the same pipeline."""
    driver = model_loads()
    distributed = run_build(read_only_greedy, out=tmp_path / "ray", quiet=True, executor="ray")
    assert distributed.summary.generated == 12
    # generation and the label check's scoring ran on the same 2 actors, each loading once
    assert distributed.summary.model_loads == 2 and model_loads() == driver
    assert (tmp_path / "ray" / "records.jsonl").read_text() == (reference / "records.jsonl").read_text()
    local = load_from_disk(str(reference / "dataset"))
    assert set(distributed.dataset) == set(local)
    for split in local:
        assert distributed.dataset[split].to_list() == local[split].to_list()
    again = run_build(read_only_greedy, out=tmp_path / "ray", quiet=True, executor="ray")
    assert again.summary.generated == 0 and again.summary.reused == 12, "shards written by the Ray run"


def test_one_pool_serves_every_call(ray_local):
    """Rounds, steps and scoring reuse the actors: two generate calls and a score call, 2 loads."""
    config = ModelConfig(dtype="float32", batch_size=3)
    backend = RayBackend(config, ExecutorConfig(kind="ray", actors=2))
    params = GenerationParams(max_new_tokens=8, temperature=0)
    ask = [{"role": "user", "content": f"Name a {thing}."} for thing in ("fruit", "colour", "river", "tree")]
    first = {
        c.id: c.text for c in backend.generate([Request(str(i), [m], i) for i, m in enumerate(ask)], params)
    }
    again = {
        c.id: c.text for c in backend.generate([Request(str(i), [m], i) for i, m in enumerate(ask)], params)
    }
    assert first == again and len(first) == 4
    prompts = [[m] for m in ask]
    remote = backend.score(prompts, ["yes", "no"])
    local = TransformersBackend(config).score(prompts, ["yes", "no"])
    assert remote.shape == (4, 2) and np.allclose(remote, local, atol=1e-4)
    assert backend.model_loads() == 2


def test_actors_over_a_server_refuse_what_only_the_local_backend_decodes(ray_local):
    """Guidance rows and the length push need the transformers backend in each actor, and a reply's
    opening a backend that continues it."""
    pool = ExecutorConfig(kind="ray", actors=1)
    local = RayBackend(ModelConfig(), pool)
    served = RayBackend(ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", name="m"), pool)
    for params in (GenerationParams(guidance_scale=2), GenerationParams(length_push=1)):
        local.check([], params)
        with pytest.raises(ConfigError, match="RayBackend cannot"):
            served.check([], params)
    turns = [{"role": "user", "content": "Review it."}, {"role": "assistant", "content": "The"}]
    opened = [Request("a", turns, 1)]
    local.check(opened, GenerationParams())
    with pytest.raises(ConfigError, match="RayBackend cannot continue a reply's opening"):
        served.check(opened, GenerationParams())
