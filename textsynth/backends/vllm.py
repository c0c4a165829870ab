"""In-process vLLM (`backend: vllm`) for a GPU: the same sampling parameters and per-record seeds.

vLLM schedules its own continuous batch, so all requests go to one `LLM.chat` call per
`batch_size` slice; each request's `SamplingParams.seed` is the record's seed, so a record's
sample does not depend on its neighbours, as with the transformers backend. A request with a
JSON schema is decoded to it with vLLM's structured outputs (guided decoding before 0.11).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from textsynth.backends.base import Backend, Completion, Request, opening
from textsynth.config import GenerationParams, ModelConfig
from textsynth.errors import ModelError
from textsynth.models import identify


def require_vllm() -> None:
    """Fail with the fix when vLLM or a CUDA GPU is missing."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ModelError(
            "model.backend: vllm is not installed (pip install vllm, on a machine with a CUDA GPU), "
            "or use backend: transformers"
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise ModelError(
            "model.backend: vllm needs a CUDA GPU and none is visible; use backend: transformers"
        )


class VLLMBackend(Backend):
    supports_opening = True

    def __init__(self, config: ModelConfig) -> None:
        require_vllm()
        from vllm import LLM

        ident = identify(config)
        self.config = config
        self.model_id, self.revision = ident.model_id, ident.revision
        self.dtype = ident.dtype
        self.llm = LLM(model=ident.source, dtype=ident.dtype, seed=0)

    def _params(
        self, params: GenerationParams, seed: int, schema: dict[str, Any] | None = None, **extra: object
    ):
        from vllm import SamplingParams

        if schema is not None:
            try:
                from vllm.sampling_params import StructuredOutputsParams

                extra["structured_outputs"] = StructuredOutputsParams(json=schema)
            except ImportError:  # vLLM < 0.11
                from vllm.sampling_params import GuidedDecodingParams

                extra["guided_decoding"] = GuidedDecodingParams(json=schema)
        return SamplingParams(
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            stop=params.stop or None,
            top_k=params.top_k or -1,
            seed=seed,
            **extra,
        )

    def generate(self, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
        step = self.config.batch_size
        by_opening = [[r for r in requests if bool(opening(r.messages)) == o] for o in (False, True)]
        chunks = [
            (part[i : i + step], o)
            for part, o in zip(by_opening, (False, True))
            for i in range(0, len(part), step)
        ]
        for chunk, opened in chunks:  # the chat template is applied per call: open or not, per chunk
            outputs = self.llm.chat(
                [r.messages for r in chunk],
                [self._params(params, r.seed, r.schema) for r in chunk],
                use_tqdm=False,
                add_generation_prompt=not opened,
                continue_final_message=opened,
            )
            for req, out in zip(chunk, outputs):
                first = out.outputs[0]
                reason = "length" if first.finish_reason == "length" else "stop"
                yield Completion(req.id, first.text, len(first.token_ids), reason)

    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> np.ndarray:
        """Log-likelihood of each choice after each prompt.

        Choices with distinct first tokens are told apart by that token: its log-probability among
        the top 20 of the next token, one step per prompt. Choices that share a first token
        (`top_up_failed`, `top_up_limits`) would all score alike that way, so each is scored whole:
        prompt + choice as one prompt whose per-token log-probabilities (`prompt_logprobs`) give
        the choice's tokens; vLLM's prefix cache computes the shared prompt once.
        """
        tokenizer = self.llm.get_tokenizer()
        choice_ids = [tokenizer.encode(c, add_special_tokens=False) for c in choices]
        out = np.zeros((len(prompts), len(choices)))
        if len({c[0] for c in choice_ids}) == len(choices):
            params = self._params(GenerationParams(max_new_tokens=1, temperature=0), 0, logprobs=20)
            for i, output in enumerate(self.llm.chat(list(prompts), params, use_tqdm=False)):
                top = output.outputs[0].logprobs[0]
                floor = min(lp.logprob for lp in top.values()) - 5.0
                out[i] = [top[c[0]].logprob if c[0] in top else floor for c in choice_ids]
            return out
        params = self._params(GenerationParams(max_new_tokens=1, temperature=0), 0, prompt_logprobs=0)
        encoded = [
            tokenizer.encode(
                tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
            )
            for p in prompts
        ]
        inputs = [{"prompt_token_ids": ids + c} for ids in encoded for c in choice_ids]
        for k, output in enumerate(self.llm.generate(inputs, params, use_tqdm=False)):
            i, j = divmod(k, len(choice_ids))
            tail = choice_ids[j]
            steps = output.prompt_logprobs[-len(tail) :]  # each holds the prompt's own token
            out[i, j] = sum(step[token].logprob for step, token in zip(steps, tail))
        return out
