"""Default backend: a local Hugging Face model driven by textsynth's own decode loop (decode.py)."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from textsynth.backends.base import Backend, Completion, Feed, Request, opening
from textsynth.backends.decode import Active, DecodeLoop, GuidedItem, Item
from textsynth.backends.grammar import Grammars, RowGrammar
from textsynth.backends.length import LengthPush
from textsynth.config import GenerationParams, ModelConfig
from textsynth.errors import ConfigError
from textsynth.models import LoadedModel, load_model

# Padded tokens per scoring forward pass: 1.16× faster than batches of 64 rows on 2 cores, on real
# sentences and on a default build's texts alike (benchmarks/bench_scoring.py, benchmarks/archive/history.md).
SCORE_TOKENS = 2048


class TransformersBackend(Backend):
    supports_guidance = True
    supports_length_push = True
    supports_opening = True

    def __init__(self, config: ModelConfig, loaded: LoadedModel | None = None) -> None:
        self.loaded = loaded or load_model(config)
        self.batch_size = config.batch_size
        self.model_id = self.loaded.model_id
        self.revision = self.loaded.revision
        self.dtype = self.loaded.dtype
        eos = self.loaded.model.generation_config.eos_token_id
        eos_ids = list(eos) if isinstance(eos, list) else [eos]
        if self.loaded.tokenizer.eos_token_id is not None:
            eos_ids.append(self.loaded.tokenizer.eos_token_id)
        self.eos = torch.tensor(sorted({e for e in eos_ids if e is not None}))
        forward_args = inspect.signature(self.loaded.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        self._grammars: Grammars | None = None
        self._push: LengthPush | None = None
        self._stops: dict[tuple[str, ...], frozenset[int]] = {}

    @property
    def vocab_size(self) -> int:
        """Rows of the model's logits (the LM head's outputs, packed or not)."""
        return int(self.loaded.model.get_output_embeddings().out_features)

    @property
    def context_length(self) -> int:
        return int(getattr(self.loaded.model.config, "max_position_embeddings", 2048))

    def encode(self, messages: list[dict[str, str]]) -> list[int]:
        """Prompt token ids with the model's chat template applied; a reply's opening is left open."""
        tok = self.loaded.tokenizer
        if opening(messages):
            text = tok.apply_chat_template(messages, continue_final_message=True, tokenize=False)
        else:
            text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return tok(text, add_special_tokens=False)["input_ids"]

    def check(self, requests: Sequence[Request], params: GenerationParams) -> None:
        super().check(requests, params)
        longest = max((len(self.encode(r.messages)) for r in requests), default=0)
        if longest + params.max_new_tokens > self.context_length:
            raise ConfigError(
                f"generation.max_new_tokens: {params.max_new_tokens} + the longest prompt ({longest} "
                f"tokens) exceeds the model's context of {self.context_length} tokens; lower it"
            )

    def _loop(self) -> DecodeLoop:
        return DecodeLoop(
            self.loaded.model, self.eos, self.loaded.tokenizer.pad_token_id, self.batch_size, self._cache_arg
        )

    def _padded_batches(self, rows: list[Item]) -> Iterator[list[Item]]:
        """Consecutive rows (sorted by length) in batches of at most `batch_size` rows and
        SCORE_TOKENS padded tokens: a forward pass is compute-bound, so the padding a long row
        adds to a batch of short ones is wasted time."""
        batch: list[Item] = []
        for row in rows:
            if batch and (len(batch) == self.batch_size or (len(batch) + 1) * len(row[2]) > SCORE_TOKENS):
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch

    @torch.inference_mode()
    def score(self, prompts: Sequence[list[dict[str, str]]], choices: Sequence[str]) -> np.ndarray:
        tok = self.loaded.tokenizer
        choice_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
        encoded = [self.encode(m) for m in prompts]
        loop = self._loop()
        prefix = loop.shared_prefix(encoded)  # the question all prompts start with: computed once
        rows = sorted(((i, 0, ids) for i, ids in enumerate(encoded)), key=lambda r: len(r[2]))
        out = np.zeros((len(prompts), len(choices)))
        if len({ids[0] for ids in choice_ids}) == len(choices):
            # distinct first tokens decide the choice: one forward per prompt
            firsts = torch.tensor([ids[0] for ids in choice_ids])
            for batch in self._padded_batches(rows):
                logits = loop.prefill(batch, prefix).logits
                logp = torch.log_softmax(logits.float(), dim=-1)[:, firsts.to(logits.device)]
                out[[i for i, _, _ in batch]] = logp.cpu().numpy()
            return out
        # choices that share a first token (intents such as top_up_failed, top_up_limits): each
        # prompt is prefilled once and every choice continues from its KV cache
        for batch in self._padded_batches(rows):
            out[[i for i, _, _ in batch]] = self._continuations(loop.prefill(batch, prefix), choice_ids)
        return out

    def _continuations(self, prompts: Active, choice_ids: list[list[int]]) -> np.ndarray:
        """(prompts, choices) log-likelihood of each choice after each prefilled prompt.

        The choices' tokens form a prefix tree ("top_up_failed" and "top_up_limits" share
        "top_up_"); every prompt's row continues with the tree's inner nodes once, each node
        attending to the prompt and its own ancestors only, so a node's logits score the next token
        of every choice through it (37 tokens fed instead of 10 choices padded to 12 for the ten
        top-up intents).
        """
        model, device = self.loaded.model, self.loaded.model.device
        nodes: dict[tuple[int, ...], int] = {}  # a choice prefix fed as input → its column
        for choice in choice_ids:
            for k in range(1, len(choice)):
                nodes.setdefault(tuple(choice[:k]), len(nodes))
        first_logp = torch.log_softmax(prompts.logits.float(), dim=-1)  # predicts each first token
        out = first_logp[:, [c[0] for c in choice_ids]].double()
        if nodes:
            prefixes = list(nodes)
            ancestors = torch.zeros(len(nodes), len(nodes), dtype=torch.bool)
            for prefix, col in nodes.items():
                ancestors[col, [nodes[prefix[:j]] for j in range(1, len(prefix) + 1)]] = True
            rows = len(prompts.rows)
            tree = ancestors.to(device)[None].expand(rows, -1, -1)
            mask = torch.cat([prompts.attention.bool()[:, None, :].expand(-1, len(nodes), -1), tree], dim=2)
            ids = torch.tensor([p[-1] for p in prefixes], device=device)[None].expand(rows, -1)
            depth = torch.tensor([len(p) - 1 for p in prefixes], device=device)
            logits = model(
                input_ids=ids,
                attention_mask=mask[:, None],
                position_ids=prompts.next_pos + depth[None],
                use_cache=True,
                **{self._cache_arg: prompts.cache},
            ).logits
            logp = torch.log_softmax(logits.float(), dim=-1)  # node column t predicts the next token
            for j, choice in enumerate(choice_ids):
                cols = [nodes[tuple(choice[:k])] for k in range(1, len(choice))]
                if cols:
                    steps = logp[:, cols].gather(
                        -1, torch.tensor(choice[1:], device=device)[None, :, None].expand(rows, -1, 1)
                    )
                    out[:, j] += steps.squeeze(-1).double().sum(dim=1)
        return out.cpu().numpy()

    def _grammar(self, request: object) -> RowGrammar | None:
        """A matcher for a request with a schema; the tokenizer is indexed on first use."""
        schema = request.schema if isinstance(request, Request) else None
        if schema is None:
            return None
        if self._grammars is None:
            self._grammars = Grammars(self.loaded.tokenizer, self.vocab_size, self.eos.tolist())
        return self._grammars.row(schema)

    def _length_push(self, scale: float) -> LengthPush | None:
        """The push toward each request's `target_words`; the tokenizer is indexed on first use."""
        if not scale:
            return None
        if self._push is None:
            self._push = LengthPush.for_tokenizer(
                self.loaded.tokenizer, self.vocab_size, self.eos.tolist(), scale, lambda r: r.target_words
            )
        elif self._push.scale != scale:
            self._push = dataclasses.replace(self._push, scale=scale)  # the same token index
        return self._push

    def _stop_ids(self, stop: list[str]) -> frozenset[int]:
        """Tokens whose text holds a stop string: sampling one ends the row (`answers` then cuts the
        text there). A stop string split over several tokens is cut from the text at the end."""
        key = tuple(stop)
        if key not in self._stops:
            tok = self.loaded.tokenizer
            texts = tok.batch_decode([[i] for i in range(len(tok))]) if stop else []
            self._stops[key] = frozenset(i for i, t in enumerate(texts) if any(s in t for s in stop))
        return self._stops[key]

    def _items(self, requests: Sequence[Request], params: GenerationParams) -> list[GuidedItem]:
        """Decode-loop items for a group of requests, the longest prompts first."""
        guided = params.guidance_scale != 1
        encoded = sorted(((r, self.encode(r.messages)) for r in requests), key=lambda p: -len(p[1]))
        return [
            (r, r.seed, ids, [self.encode(neg) for neg in r.negatives] if guided else [])
            for r, ids in encoded
        ]

    def generate(self, requests: Sequence[Request], params: GenerationParams) -> Iterator[Completion]:
        return self.stream(Feed(requests), params)

    def stream(self, feed: Feed, params: GenerationParams) -> Iterator[Completion]:
        """One decode loop for every group: a group added while it runs joins as rows free up."""
        loop = self._loop()
        push = self._length_push(params.length_push)
        stops = self._stop_ids(params.stop)

        def more() -> list[GuidedItem]:
            group = feed.take()
            return self._items(group, params) if group else []

        for request, tokens, stopped in loop.run(more(), params, self._grammar, push, stops, more):
            body = tokens[:-1] if stopped and tokens[-1] not in stops else tokens
            text = self.loaded.tokenizer.decode(body, skip_special_tokens=True)
            yield Completion(request.id, text, len(tokens), "stop" if stopped else "length")
