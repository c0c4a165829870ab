"""Grammar-constrained decoding: a JSON step is generated to the schema its `fields` declare.

Sampling a JSON object freely and retrying what does not parse wastes most of a small model's
compute; masking, at each step, every token that cannot continue a valid object makes every
completion parse. xgrammar does the masking: against llguidance and outlines-core on the
embedded model's tokenizer it filled a row's next-token bitmask fastest (benchmarks/archive/history.md),
and a per-row bitmask fits the decode loop, where each row samples with its own seed. A row's
mask depends only on its own tokens, so a constrained sample is as independent of its batch as
a free one. xgrammar is imported only when a request carries a schema.
"""

from __future__ import annotations

import json
from typing import Any

import torch

_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "str": {"type": "string", "minLength": 1},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
}


def json_schema(fields: dict[str, str | list[str]]) -> dict[str, Any]:
    """The JSON schema of a step's `fields`: exactly these keys, all required, each typed; a
    choice field (a list) allows only its strings."""
    return {
        "type": "object",
        "properties": {
            name: {"enum": kind} if isinstance(kind, list) else _FIELD_SCHEMAS[kind]
            for name, kind in fields.items()
        },
        "required": list(fields),
        "additionalProperties": False,
    }


class RowGrammar:
    """One row's matcher and the bitmask of the tokens it allows next.

    The mask is filled right after each token, so the row knows at once when only the stop token
    can follow: sampling would pick it whatever the logits, so the row ends on it without another
    forward pass and with the same tokens.
    """

    def __init__(self, matcher: Any, stop_ids: set[int], vocab_size: int) -> None:
        import xgrammar as xgr

        self.matcher = matcher
        self.stop_ids = stop_ids
        self.bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        matcher.fill_next_token_bitmask(self.bitmask)

    def accept(self, token: int) -> int | None:
        """Advance by the sampled token; the stop token when it is the only one left, else None."""
        self.matcher.accept_token(token)
        if token in self.stop_ids:
            return None
        self.matcher.fill_next_token_bitmask(self.bitmask)
        words = self.bitmask[0]
        if not any(int(words[t // 32]) >> (t % 32) & 1 for t in self.stop_ids):
            return None  # the usual case: the object is not finished
        allowed = _unpack(self.bitmask)[0].nonzero().flatten().tolist()
        return allowed[0] if len(allowed) == 1 else None


def _unpack(bitmask: torch.Tensor) -> torch.Tensor:
    """(rows, words) int32 bitmask → (rows, words·32) bool, True where a token is allowed."""
    shifts = torch.arange(32, dtype=torch.int32)
    return ((bitmask[:, :, None] >> shifts) & 1).bool().flatten(1)


class Grammars:
    """Schemas compiled for one tokenizer (each once) and the matchers of constrained rows."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: list[int]) -> None:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        self.compiler = xgr.GrammarCompiler(info)
        self.vocab_size = vocab_size
        self.stop_ids = set(stop_ids)
        self._compiled: dict[str, Any] = {}

    def row(self, schema: dict[str, Any]) -> RowGrammar:
        """A fresh matcher for one row that must produce a JSON object fitting `schema`."""
        import xgrammar as xgr

        key = json.dumps(schema)  # property order is the order fields are written in
        if key not in self._compiled:
            # one line, ", " and ": " only: free whitespace lets a small model pad until its limit
            self._compiled[key] = self.compiler.compile_json_schema(key, any_whitespace=False)
        return RowGrammar(xgr.GrammarMatcher(self._compiled[key]), self.stop_ids, self.vocab_size)


def masked(logits: torch.Tensor, grammars: list[RowGrammar | None]) -> torch.Tensor:
    """The logits (float32) with every token a row's grammar forbids at -inf; rows without one as they are."""
    index = [i for i, g in enumerate(grammars) if g is not None]
    if not index:
        return logits
    import xgrammar as xgr

    bitmask = xgr.allocate_token_bitmask(len(grammars), logits.shape[-1])
    bitmask[index] = torch.cat([grammars[i].bitmask for i in index])  # type: ignore[union-attr]
    out = logits.clone() if logits.dtype == torch.float32 else logits.float()  # a copy either way
    xgr.apply_token_bitmask_inplace(out, bitmask.to(out.device), indices=index)
    return out
