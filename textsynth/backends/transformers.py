"""Default backend: a local Hugging Face model driven by textsynth's own decode loop.

`model.generate` spends steps on rows that already ended and samples over the whole
vocabulary; this loop prefills a length-sorted, left-padded batch once, drops finished rows
from the KV cache, and samples with per-record seeded noise (see sampling.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from textsynth.backends.base import Backend, Completion, Request
from textsynth.backends.sampling import sample_next
from textsynth.config import GenerationParams, ModelConfig
from textsynth.errors import ConfigError
from textsynth.models import LoadedModel, load_model


class TransformersBackend(Backend):
    def __init__(self, config: ModelConfig, loaded: LoadedModel | None = None) -> None:
        self.loaded = loaded or load_model(config)
        self.batch_size = config.batch_size
        self.model_id = self.loaded.model_id
        self.revision = self.loaded.revision
        self.dtype = self.loaded.dtype
        eos = self.loaded.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        if self.loaded.tokenizer.eos_token_id is not None:
            eos_ids.append(self.loaded.tokenizer.eos_token_id)
        self.eos = torch.tensor(sorted({e for e in eos_ids if e is not None}))
        forward_args = inspect.signature(self.loaded.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"

    @property
    def context_length(self) -> int:
        return int(getattr(self.loaded.model.config, "max_position_embeddings", 2048))

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt token ids with the model's chat template applied."""
        tok = self.loaded.tokenizer
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]

    def check(self, requests: Sequence[Request], params: GenerationParams) -> None:
        longest = max((len(self.encode(r.messages)) for r in requests), default=0)
        if longest + params.max_new_tokens > self.context_length:
            raise ConfigError(
                f"generation.max_new_tokens: {params.max_new_tokens} + the longest prompt ({longest} "
                f"tokens) exceeds the model's context of {self.context_length} tokens; lower it"
            )

    def generate(self, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
        encoded = sorted(((r, self.encode(r.messages)) for r in requests), key=lambda p: -len(p[1]))
        for start in range(0, len(encoded), self.batch_size):
            yield from self._decode(encoded[start : start + self.batch_size], params)

    @torch.inference_mode()
    def _decode(
        self, batch: list[tuple[Request, list[int]]], params: GenerationParams
    ) -> Iterator[Completion]:
        model, tok = self.loaded.model, self.loaded.tokenizer
        device = model.device
        width = max(len(ids) for _, ids in batch)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for _, ids in batch], device=device)
        attention = torch.tensor(
            [[0] * (width - len(ids)) + [1] * len(ids) for _, ids in batch], device=device
        )
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        rows = [r for r, _ in batch]
        seeds = np.array([r.seed for r in rows], dtype=np.uint64)
        out_tokens: list[list[int]] = [[] for _ in rows]
        cache = DynamicCache(config=model.config)
        logits = model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        ).logits[:, -1, :]
        next_pos = positions[:, -1:] + 1
        eos = self.eos.to(device)
        for step in range(params.max_new_tokens):
            token = sample_next(logits, seeds, step, params)
            ended = torch.isin(token, eos)
            if step == params.max_new_tokens - 1:
                ended = torch.ones_like(ended)
            token_list = token.tolist()
            ended_list = ended.tolist()
            for i, t in enumerate(token_list):
                out_tokens[i].append(t)
                if ended_list[i]:
                    yield self._completion(rows[i], out_tokens[i], t in self.eos.tolist())
            if all(ended_list):
                return
            if any(ended_list):
                keep = (~ended).nonzero().squeeze(-1)
                cache.batch_select_indices(keep)
                attention, next_pos, token = attention[keep], next_pos[keep], token[keep]
                kept = keep.tolist()
                rows = [rows[i] for i in kept]
                out_tokens = [out_tokens[i] for i in kept]
                seeds = seeds[kept]
            attention = torch.cat([attention, attention.new_ones(len(rows), 1)], dim=-1)
            logits = model(
                input_ids=token[:, None],
                attention_mask=attention,
                position_ids=next_pos,
                use_cache=True,
                **{self._cache_arg: cache},
            ).logits[:, -1, :]
            next_pos = next_pos + 1

    def _completion(self, request: Request, tokens: list[int], stopped: bool) -> Completion:
        body = tokens[:-1] if stopped else tokens
        text = self.loaded.tokenizer.decode(body, skip_special_tokens=True)
        return Completion(request.id, text, len(tokens), "stop" if stopped else "length")
