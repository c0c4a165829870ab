"""backend: vllm. Without vLLM or a GPU (CI, this project's machines) the pipeline fails before
any model loads with a one-line fix; the generation test runs only where vLLM and a CUDA GPU exist."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml

from tests.conftest import SENTIMENT
from textsynth.errors import ModelError
from textsynth.pipeline import prepare, run_build
from textsynth.pipeline_file import load_pipeline

HAS_GPU_VLLM = importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def vllm_pipeline(project, n: int):
    data = load_pipeline(SENTIMENT).model_dump(mode="json")
    data.update(n=n)
    data["model"]["backend"] = "vllm"
    data["generation"]["guidance_scale"] = 1  # vLLM decodes no guidance rows
    path = project / "pipelines" / "vllm.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.skipif(HAS_GPU_VLLM, reason="vLLM and a GPU are present: test_vllm_build runs instead")
def test_missing_vllm_or_gpu_is_a_one_line_error_before_any_model_loads(project):
    with pytest.raises(ModelError, match="backend: transformers") as err:
        prepare(vllm_pipeline(project, 4))
    assert "\n" not in str(err.value)


@pytest.mark.skipif(not HAS_GPU_VLLM, reason="needs vLLM and a CUDA GPU; none on CI or these CPU machines")
def test_vllm_build(project, tmp_path):
    result = run_build(vllm_pipeline(project, 12), out=tmp_path / "run", quiet=True)
    assert result.summary.generated >= 12 and result.summary.kept >= 1
