"""`--executor ray` on a local Ray instance (2 actors, one model each): fp32 greedy decoding gives
the same dataset as the single-process build, through the same shards and cache."""

from __future__ import annotations

import pytest

from textsynth.pipeline import run_build


@pytest.fixture
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_build_equals_single_process(greedy_pipeline, tmp_path, ray_local):
    local = run_build(greedy_pipeline, out=tmp_path / "local", quiet=True)
    distributed = run_build(greedy_pipeline, out=tmp_path / "ray", quiet=True, executor="ray")
    assert distributed.summary.generated == local.summary.generated == 12
    assert (tmp_path / "ray" / "records.jsonl").read_text() == (
        tmp_path / "local" / "records.jsonl"
    ).read_text()
    for split in local.dataset:
        assert distributed.dataset[split].to_list() == local.dataset[split].to_list()
    again = run_build(greedy_pipeline, out=tmp_path / "ray", quiet=True, executor="ray")
    assert again.summary.generated == 0 and again.summary.reused == 12, "shards written by the Ray run"
