"""backend: vllm. Without vLLM or a GPU (CI, this project's machines) the pipeline fails before
any model loads with a one-line fix; the generation test runs only where vLLM and a CUDA GPU exist."""

from __future__ import annotations

import importlib.util

import numpy as np
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


class EmbeddedModelAsVLLM:
    """The part of vLLM's `LLM` that choice scoring calls, answered by the embedded model in fp32:
    vLLM needs a CUDA GPU, which this machine lacks. Its `generate` returns, like vLLM with
    `prompt_logprobs=0`, each prompt token's log-probability given the tokens before it."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def get_tokenizer(self):
        return self.backend.loaded.tokenizer

    def generate(self, inputs, params, use_tqdm=False):
        from types import SimpleNamespace

        assert params.prompt_logprobs == 0
        for x in inputs:
            ids = x["prompt_token_ids"]
            with torch.inference_mode():
                logits = self.backend.loaded.model(torch.tensor([ids])).logits[0]
            logp = torch.log_softmax(logits.float(), dim=-1)
            steps = [
                {ids[t]: SimpleNamespace(logprob=float(logp[t - 1, ids[t]]))} for t in range(1, len(ids))
            ]
            yield SimpleNamespace(prompt_logprobs=[None, *steps])


def test_vllm_scores_choices_sharing_a_first_token_whole(monkeypatch):
    """Intent names that share their first token score as whole continuations, the same numbers
    the transformers backend gives (fp32), not one first-token score for all of them."""
    from types import SimpleNamespace

    from textsynth.backends.transformers import TransformersBackend
    from textsynth.backends.vllm import VLLMBackend
    from textsynth.config import ModelConfig

    reference = TransformersBackend(ModelConfig(dtype="float32"))
    backend = object.__new__(VLLMBackend)  # no vLLM engine: its scoring calls go to the stand-in
    backend.llm = EmbeddedModelAsVLLM(reference)
    monkeypatch.setattr(VLLMBackend, "_params", lambda self, params, seed, **extra: SimpleNamespace(**extra))
    choices = ["top up failed", "top up limits", "pending top up"]
    texts = ["My top-up did not go through.", "How much can I add at most?", "Still waiting for it."]
    prompts = [[{"role": "user", "content": f"Which intent? Text: {t}"}] for t in texts]
    ours = backend.score(prompts, choices)
    assert np.allclose(ours, reference.score(prompts, choices), atol=1e-3)
    assert len(set(np.round(ours[0], 3))) == len(choices)  # the shared first token does not tie them
