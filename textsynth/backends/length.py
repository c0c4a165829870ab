"""Length push: texts end near the length their prompt asked for.

A small model ignores "about 11 words" in its prompt (restaurant_reviews: 20.9 words kept against
11.0 in the real sentences). Past a row's target word count, each step adds `scale · (words −
target + 1)` to the logits of the tokens that end a sentence and of the stop token, and the row
ends at the first sentence end it samples there. The model closes its sentence at the next place
it finds natural instead of being cut mid-clause. Like transformers'
`ExponentialDecayLengthPenalty`, but per row, counted in words, and aimed at sentence ends as well
as the stop token: one long sentence has no place for the stop token before its end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol

import torch

SENTENCE_ENDS = (".", "!", "?")
WORD_MARKS = ("Ġ", "▁", "Ċ", "<0x0A>")  # byte-level BPE and SentencePiece: space or newline before


class Counted(Protocol):
    target: int | None
    words: int


@dataclass(frozen=True)
class LengthPush:
    """What the decode loop needs to push rows toward their target length."""

    scale: float
    ends: torch.Tensor  # token ids that are exactly a sentence end: ".", "!", "?"
    stops: torch.Tensor  # the stop tokens
    word_starts: list[bool]  # per token id: the token begins a new word
    target: Callable[[Any], int | None]  # a row's key → its target word count

    @classmethod
    def for_tokenizer(
        cls,
        tokenizer: Any,
        vocab: int,
        stop_ids: Sequence[int],
        scale: float,
        target: Callable[[Any], int | None],
    ) -> LengthPush:
        n = min(len(tokenizer), vocab)
        pieces = tokenizer.convert_ids_to_tokens(list(range(n)))
        texts = [tokenizer.decode([i]) for i in range(n)]
        starts = [
            str(p).startswith(WORD_MARKS) and any(c.isalnum() for c in t) for p, t in zip(pieces, texts)
        ]
        ends = [i for i, t in enumerate(texts) if t in SENTENCE_ENDS]
        return cls(
            scale,
            torch.tensor(ends),
            torch.tensor(sorted(set(stop_ids))),
            starts + [False] * (vocab - n),
            target,
        )

    def count(self, row: Counted, token: int) -> None:
        """Advance the row's word count by one sampled token."""
        if row.words == 0 or (token < len(self.word_starts) and self.word_starts[token]):
            row.words += 1

    @cached_property
    def closing(self) -> frozenset[int]:
        """`ends` as a set, for the check on every sampled token."""
        return frozenset(self.ends.tolist())

    @cached_property
    def marks(self) -> torch.Tensor:
        """The tokens that get the bonus: sentence ends and stop tokens."""
        return torch.cat([self.ends, self.stops])

    def closes(self, row: Counted, token: int) -> bool:
        """Whether the row ends with this token: a sentence end past its target."""
        return bool(row.target) and row.words >= row.target and token in self.closing

    @property
    def stop(self) -> int:
        """The token a closed row ends on (not part of its text)."""
        return int(self.stops[0])

    def apply(self, logits: torch.Tensor, rows: Sequence[Counted]) -> torch.Tensor:
        """The logits (float32) with the bonus added for rows past their target; a copy when any is."""
        over = [(i, r.words - r.target + 1) for i, r in enumerate(rows) if r.target and r.words >= r.target]
        if not over:
            return logits
        out = logits.clone() if logits.dtype == torch.float32 else logits.float()
        index = torch.tensor([i for i, _ in over], device=out.device)
        bonus = self.scale * torch.tensor([b for _, b in over], dtype=out.dtype, device=out.device)
        marks = self.marks.to(out.device)
        out[index[:, None], marks[None, :]] += bonus[:, None]
        return out
