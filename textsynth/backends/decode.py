"""Continuous-batching decode loop around a causal LM's forward pass.

What `model.generate` leaves on the table on a CPU, and what this loop does instead:
- rows that ended keep being computed until the whole batch ends → finished rows are dropped
  from the KV cache and their slots refilled from the queue, so (almost) no step is wasted; a
  drop moves the last rows into the freed slots and a refill writes the new rows once into a
  buffer with spare columns, so neither copies the whole cache;
- every prompt recomputes the shared system prompt and template head → the longest common
  token prefix of all prompts is run once and its KV cache is copied to each new row;
- a batch of prompts is padded to its longest → a refill's prompts are prefilled in batches of
  similar length (`length_batches`), merged into the running batch with one copy;
- sampling sorts the whole vocabulary → top-k first, then top-p, then seeded Gumbel-max
  (sampling.py), which also makes each row's sample independent of its batch.

Classifier-free guidance (Sanchez et al., 2023): an item may carry guidance prompts (the same
request naming each other label it is contrasted with). Their rows are its primary's
`partners`, receive the primary's tokens, and end with it (or leave after `guidance_tokens`);
the primary samples from other + γ·(own − other) in log-probs, `other` the mean over its
partners (CorrSynth, Kowshik et al. 2024: contrast every other label at once).

Grammar-constrained rows (grammar.py): a row may carry a matcher; before sampling, every token
its grammar forbids is masked to -inf, the sampled token advances it, and the row ends as soon as
the grammar leaves only the stop token.

Length push (length.py): past a row's target word count, sentence ends and the stop token gain
a growing logit bonus before sampling, and the first sentence end sampled there ends the row.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from textsynth.backends.grammar import RowGrammar, masked
from textsynth.backends.length import LengthPush
from textsynth.backends.sampling import sample_next
from textsynth.config import GenerationParams


@dataclass
class Row:
    key: object
    seed: int
    tokens: list[int]
    guide: bool = False  # a guidance row: follows its primary, never sampled itself
    partners: list[Row] = field(default_factory=list)  # a primary's guidance rows, while they decode
    grammar: RowGrammar | None = None  # constrains what this (primary) row may sample
    target: int | None = None  # words after which the length push starts (primary rows)
    words: int = 0  # words sampled so far, counted when a length push is on


Item = tuple[object, int, list[int]]  # (key, seed, prompt ids)
GuidedItem = tuple[object, int, list[int], list[list[int]]]  # … and its guidance prompts' ids


@dataclass
class Active:
    """The rows being decoded, with their KV cache and the logits of their next token."""

    rows: list[Row]
    cache: DynamicCache
    attention: torch.Tensor  # (rows, cache length), 0 = padding
    next_pos: torch.Tensor  # (rows, 1) position of the next token
    logits: torch.Tensor  # (rows, vocab)


@dataclass
class SharedPrefix:
    """A prompt prefix's per-layer keys and values, and its length in tokens."""

    cache: list[tuple[torch.Tensor, torch.Tensor]]
    length: int


def common_prefix(prompts: list[list[int]]) -> int:
    """Length of the token prefix shared by all prompts, leaving each at least one token."""
    if not prompts:
        return 0
    first, limit = prompts[0], min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return n


# What one more forward pass costs beside its tokens, in prompt tokens. On the 2-core AMX Xeon a pass
# of the default model has a fixed 38–45 ms (its weights read once) and 0.36–0.40 ms a token in bf16,
# 1.1 ms in fp32: about 105 and 40 tokens (benchmarks/bench_prefill.py). 64 lies between them, not
# tuned; the split it gives ran 1.06× the tokens/s of one padded batch capped at AVX2 (fp32, the
# same tokens) and 1.02× in bf16 on AMX (benchmarks/bench_decode.py; history, session 19).
PASS_TOKENS = 64


def length_batches(lengths: list[int]) -> list[list[int]]:
    """Indices of `lengths` in batches of similar length, shortest first, that minimise the padded
    tokens plus `PASS_TOKENS` per batch: one batch pads a default build's refills by 14–21 %, these
    by 1.5–3.5 % (benchmarks/bench_prefill.py), and its prefill is a third of its generation on an
    AVX2 CPU."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sizes = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(order)  # best[j]: the cheapest split of the j shortest
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        for i in range(j):  # the last batch holds the i-th to (j-1)-th shortest
            cost = best[i] + (j - i) * sizes[j - 1] + PASS_TOKENS
            if cost < best[j]:
                best[j], cut[j] = cost, i
    batches, j = [], len(order)
    while j:
        batches.append(order[cut[j] : j])
        j = cut[j]
    return batches[::-1]


class SlackLayer(DynamicLayer):
    """A KV cache layer with spare columns after its last token.

    DynamicLayer concatenates every new token, which copies the layer's whole cache at every
    decode step; here a step writes its column in place and the buffer grows by `SLACK` columns
    when full. Dropping rows or leading padding columns keeps the spare columns.
    """

    SLACK = 32

    def __init__(self) -> None:
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self.length = 0
        super().__init__()

    @property  # type: ignore[override]
    def keys(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, : self.length]

    @keys.setter
    def keys(self, value: torch.Tensor | None) -> None:
        self._k = value
        self.length = 0 if value is None else value.shape[2]

    @property  # type: ignore[override]
    def values(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, : self.length]

    @values.setter
    def values(self, value: torch.Tensor | None) -> None:
        self._v = value

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self._k is None or self._v is None:
            self.keys, self.values = key_states, value_states
        else:
            end = self.length + key_states.shape[2]
            if end > self._k.shape[2]:
                self._k, self._v = self._grown(self._k, end), self._grown(self._v, end)
            self._k[:, :, self.length : end] = key_states
            self._v[:, :, self.length : end] = value_states
            self.length = end
        return self.keys, self.values  # type: ignore[return-value]

    def _grown(self, buffer: torch.Tensor, end: int) -> torch.Tensor:
        rows, heads, _, dim = buffer.shape
        out = buffer.new_empty(rows, heads, end + self.SLACK, dim)
        out[:, :, : self.length] = buffer[:, :, : self.length]
        return out

    def start(self, keys: torch.Tensor, values: torch.Tensor, rows: int, room: int) -> None:
        """Begin `rows` rows that share the prefix `keys`/`values` (1, heads, length, dim), with
        `room` spare columns for what follows: the prefix is copied once, into place."""
        self.lazy_initialization(keys, values)
        heads, length, dim = keys.shape[1:]
        self._k = keys.new_empty(rows, heads, length + room, dim)
        self._v = values.new_empty(rows, heads, length + room, dim)
        self._k[:, :, :length] = keys
        self._v[:, :, :length] = values
        self.length = length

    def move_rows(self, sources: list[int], targets: list[int], rows: int) -> None:
        """Copy rows `sources` into slots `targets`, then keep the first `rows` rows (a view)."""
        for name in ("_k", "_v"):
            buffer = getattr(self, name)
            if sources:
                buffer[targets] = buffer[sources]
            setattr(self, name, buffer[:rows])

    def stack(self, others: list[SlackLayer], width: int) -> None:
        """Put `others`' rows below this layer's, all ending at column `width` (the columns before
        a shorter one's start are zeros, masked), in one new buffer with spare columns."""
        layers = [self, *others]
        for name in ("_k", "_v"):
            parts = [getattr(layer, name) for layer in layers]
            heads, dim = parts[0].shape[1], parts[0].shape[3]
            out = parts[0].new_empty(sum(p.shape[0] for p in parts), heads, width + self.SLACK, dim)
            start = 0
            for layer, part in zip(layers, parts):
                end = start + part.shape[0]
                out[start:end, :, : width - layer.length] = 0
                out[start:end, :, width - layer.length : width] = part[:, :, : layer.length]
                start = end
            setattr(self, name, out)
        self.length = width

    def drop_leading(self, columns: int) -> None:
        """Forget the first `columns` positions (padding no remaining row uses)."""
        if self._k is not None and self._v is not None:
            self._k, self._v = self._k[:, :, columns:], self._v[:, :, columns:]
            self.length -= columns


def _new_cache(config: object) -> DynamicCache:
    cache = DynamicCache(config=config)
    cache.layers = [SlackLayer() for _ in cache.layers]
    return cache


def _layers(cache: DynamicCache) -> list:
    return list(cache.layers)


class DecodeLoop:
    """Generates completions for many prompts with at most `batch_size` rows at a time."""

    def __init__(self, model, eos_ids: torch.Tensor, pad_id: int, batch_size: int, cache_arg: str) -> None:
        self.model = model
        self.eos_ids = eos_ids.to(model.device)
        self.eos_set = set(eos_ids.tolist())
        self.pad_id = pad_id
        self.batch_size = batch_size
        self.cache_arg = cache_arg
        # refill once a quarter of the batch is free: a larger prefill and fewer joins of the cache
        # beat filling every slot at once (4–5 % less time than an eighth on 160 guided requests
        # at batch 64; half the batch was slower again; benchmarks/archive/history.md)
        self.refill_at = max(1, batch_size // 4)

    def _forward(self, ids, attention, positions, cache) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_arg: cache},
        )
        return out.logits[:, -1, :]

    def _prefix_cache(self, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not prefix:
            return []
        cache = _new_cache(self.model.config)
        ids = torch.tensor([prefix], device=self.model.device)
        pos = torch.arange(len(prefix), device=self.model.device)[None]
        self._forward(ids, torch.ones_like(ids), pos, cache)
        return [(layer.keys, layer.values) for layer in _layers(cache)]

    def _prefill(
        self,
        items: list[Item],
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        plen: int,
        rows: list[Row] | None = None,
    ) -> Active:
        """`items`' prompts after the first `plen` tokens, as one padded batch (`rows`: their rows,
        made here when not given)."""
        device = self.model.device
        suffixes = [ids[plen:] for _, _, ids in items]
        width = max(len(s) for s in suffixes)
        ids = torch.tensor([[self.pad_id] * (width - len(s)) + s for s in suffixes], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in suffixes], device=device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0) + plen
        cache = _new_cache(self.model.config)
        for layer, (k, v) in zip(_layers(cache), prefix):
            layer.start(k, v, len(items), width + SlackLayer.SLACK)
        attention = torch.cat([mask.new_ones(len(items), plen), mask], dim=1)
        logits = self._forward(ids, attention, positions, cache)
        rows = rows or [Row(key, seed, []) for key, seed, _ in items]
        return Active(rows, cache, attention, positions[:, -1:] + 1, logits)

    def _start(
        self, take: list[tuple[Item, bool]], prefix: list[tuple[torch.Tensor, torch.Tensor]], plen: int
    ) -> list[Active]:
        """New rows for `take` (each item's guidance rows right after it), prefilled in batches of
        similar length (`length_batches`); every guidance row is its primary's partner."""
        rows = [Row(key, seed, [], guide) for (key, seed, _), guide in take]
        primary: Row | None = None
        for row in rows:  # in `take` order, which fixes the order of a primary's partners
            if row.guide and primary is not None:
                primary.partners.append(row)
            elif not row.guide:
                primary = row
        batches = length_batches([len(ids) - plen for (_, _, ids), _ in take])
        return [self._prefill([take[i][0] for i in b], prefix, plen, [rows[i] for i in b]) for b in batches]

    @staticmethod
    def _merge(parts: list[Active]) -> Active:
        """One batch of `parts`' rows, in order, their caches right-aligned (one copy of each)."""
        if len(parts) == 1:
            return parts[0]
        width = max(p.attention.shape[1] for p in parts)
        for layers in zip(*(_layers(p.cache) for p in parts)):
            layers[0].stack(list(layers[1:]), width)  # the shorter left-padded with masked zeros
        return Active(
            [r for p in parts for r in p.rows],
            parts[0].cache,
            torch.cat([F.pad(p.attention, (width - p.attention.shape[1], 0)) for p in parts]),
            torch.cat([p.next_pos for p in parts]),
            torch.cat([p.logits for p in parts]),
        )

    @staticmethod
    def _keep(active: Active, keep: set[int]) -> tuple[Active, list[int]]:
        """Keep the rows `keep`, and which old row each new slot holds.

        The last kept rows move into the slots of ended ones (the cache copies a few rows, not
        all of them), then the leading cache columns that only padding still uses are dropped.
        """
        rows = len(keep)
        holes = [i for i in range(rows) if i not in keep]
        movers = sorted(i for i in keep if i >= rows)
        order = list(range(rows))
        for hole, mover in zip(holes, movers):
            order[hole] = mover
        for layer in _layers(active.cache):
            layer.move_rows(movers, holes, rows)
        index = torch.tensor(order, device=active.attention.device)
        attention = active.attention[index]
        lead = int(attention.any(dim=0).int().argmax())
        if lead:
            attention = attention[:, lead:]
            for layer in _layers(active.cache):
                layer.drop_leading(lead)
        kept = Active(
            [active.rows[i] for i in order],
            active.cache,
            attention,
            active.next_pos[index],
            active.logits[index],
        )
        return kept, order

    @torch.inference_mode()
    def shared_prefix(self, all_prompts: list[list[int]]) -> SharedPrefix:
        """The KV cache of the token prefix common to `all_prompts`, computed once for all batches."""
        plen = common_prefix(all_prompts)
        return SharedPrefix(self._prefix_cache(all_prompts[0][:plen]), plen)

    @torch.inference_mode()
    def prefill(self, items: list[Item], prefix: SharedPrefix) -> Active:
        """The prompts of `items` prefilled after `prefix`: their cache and next-token logits."""
        return self._prefill(items, prefix.cache, prefix.length)

    @staticmethod
    def _shared(
        prefix: list[tuple[torch.Tensor, torch.Tensor]], prefix_ids: list[int], take: list[tuple[Item, bool]]
    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
        """The part of the shared prefix's cache that all of `take`'s prompts start with (items
        added while the loop runs may share less of it than the first ones did)."""
        plen = len(prefix_ids)
        if all(ids[:plen] == prefix_ids and len(ids) > plen for (_, _, ids), _ in take):
            return prefix, plen
        plen = common_prefix([prefix_ids + [-1]] + [ids for (_, _, ids), _ in take])
        return ([(k[:, :, :plen], v[:, :, :plen]) for k, v in prefix] if plen else []), plen

    @staticmethod
    def _guided(active: Active, scale: float, slot: dict[int, int]) -> tuple[list[int], torch.Tensor]:
        """Indices of the primary rows and the logits they sample from; `slot`: row id → index."""
        primary = [i for i, r in enumerate(active.rows) if not r.guide]
        partnered = [i for i in primary if active.rows[i].partners]
        if not partnered:
            return primary, active.logits[primary] if len(primary) < len(active.rows) else active.logits
        # other + γ·(own − other) in log-probs differs from the same in logits by a constant per
        # row, which top-k, top-p, the temperature and the Gumbel-max sample all ignore: no
        # log-softmax over the vocabulary (2–3 % of a guided decode's profile)
        logits = active.logits.float()
        # the mean of the partners' logits: a sum over each primary's rows, divided by their count
        # (one partner: exactly its logits, as with a single guidance row)
        owner = [k for k, i in enumerate(partnered) for _ in active.rows[i].partners]
        rows = [slot[id(p)] for i in partnered for p in active.rows[i].partners]
        sums = logits.new_zeros(len(partnered), logits.shape[1])
        sums.index_add_(0, torch.tensor(owner, device=logits.device), logits[rows])
        counts = torch.tensor([len(active.rows[i].partners) for i in partnered], device=logits.device)
        other = sums / counts[:, None].to(sums.dtype)
        logits[partnered] = other + scale * (logits[partnered] - other)
        return primary, logits[primary]

    @torch.inference_mode()
    def run(
        self,
        items: list[GuidedItem],
        params: GenerationParams,
        constrain: Callable[[object], RowGrammar | None] | None = None,
        push: LengthPush | None = None,
        stops: frozenset[int] = frozenset(),
        more: Callable[[], list[GuidedItem]] = list,
    ) -> Iterator[tuple[object, list[int], bool]]:
        """Yield (key, tokens, stopped_on_eos) per item as rows end.

        items: (key, seed, prompt ids, guidance prompts' ids); guidance rows are decoded only
        when `params.guidance_scale` > 1 and count toward the batch size. `constrain` gives an
        item's key a fresh grammar matcher, or None for free decoding; `push` gives it a target
        length and pushes rows past it toward a sentence end; a token of `stops` (one whose text
        holds a stop string) ends its row like the stop token, and is kept in its tokens. `more`
        is asked for further items whenever the queue is empty (items added while this runs).
        """
        guided = params.guidance_scale != 1
        horizon = params.guidance_tokens or params.max_new_tokens

        def units(new: list[GuidedItem]) -> list[list[tuple[Item, bool]]]:
            return [
                [((key, seed, ids), False)] + ([((key, seed, neg), True) for neg in negs] if guided else [])
                for key, seed, ids, negs in new
            ]

        queue = deque(units(items))
        head = [ids for unit in queue for (_, _, ids), _ in unit]
        plen = common_prefix(head)
        prefix_ids = head[0][:plen] if head else []
        prefix = self._prefix_cache(prefix_ids)
        active: Active | None = None
        while True:
            if not queue:
                queue.extend(units(more()))
            if not queue and active is None:
                break
            free = self.batch_size - (len(active.rows) if active else 0)
            if queue and (active is None or free >= min(self.refill_at, len(queue))):
                take = []
                while queue and (not take or len(take) + len(queue[0]) <= free):
                    take += queue.popleft()
                fresh = self._start(take, *self._shared(prefix, prefix_ids, take))
                for row in (r for part in fresh for r in part.rows):
                    row.grammar = constrain(row.key) if constrain and not row.guide else None
                    row.target = push.target(row.key) if push and not row.guide else None
                active = self._merge([active, *fresh] if active else fresh)
            assert active is not None  # a queue that was not empty refilled it
            slot = {id(r): i for i, r in enumerate(active.rows)}
            primary, logits = self._guided(active, params.guidance_scale, slot)
            rows = [active.rows[i] for i in primary]
            seeds = np.array([r.seed for r in rows], dtype=np.uint64)
            steps = np.array([len(r.tokens) for r in rows], dtype=np.uint64)
            logits = masked(logits, [r.grammar for r in rows])
            if push is not None:
                logits = push.apply(logits, rows)
            chosen = sample_next(logits, seeds, steps, params).tolist()
            keep: dict[int, int] = {}  # row index → the token it is fed next
            for i, t in zip(primary, chosen):
                row = active.rows[i]
                row.tokens.append(t)
                forced = row.grammar.accept(t) if row.grammar else None
                if forced is not None and len(row.tokens) < params.max_new_tokens:
                    row.tokens.append(forced)
                    t = forced
                if push is not None and row.target:
                    push.count(row, row.tokens[-1])
                    if push.closes(row, t) and len(row.tokens) < params.max_new_tokens:
                        row.tokens.append(push.stop)  # ends here, like a grammar's forced stop
                        t = push.stop
                if t in self.eos_set or t in stops or len(row.tokens) >= params.max_new_tokens:
                    yield row.key, row.tokens, t in self.eos_set or t in stops
                    continue
                keep[i] = t
                if row.partners and len(row.tokens) < horizon:
                    for partner in row.partners:
                        keep[slot[id(partner)]] = t
                else:
                    row.partners = []
            if not keep:
                active = None
                continue
            order = list(range(len(active.rows)))
            if len(keep) < len(active.rows):
                active, order = self._keep(active, set(keep))
            token = torch.tensor([keep[i] for i in order], device=active.logits.device)
            active.attention = torch.cat([active.attention, active.attention.new_ones(len(keep), 1)], dim=1)
            active.logits = self._forward(token[:, None], active.attention, active.next_pos, active.cache)
            active.next_pos = active.next_pos + 1
