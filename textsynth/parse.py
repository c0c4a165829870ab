"""Raw completion → clean example text, or a rejection reason.

Small chat models wrap their answer in preambles ("Here is a review:"), quotes, labels
("Review:") and letter framing ("Hi Sarah,", "Best regards, Anna"), and a length limit cuts the
last sentence; the label itself never comes from the
output, it comes from the plan, so it is valid by construction.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, create_model

from textsynth.config import FIELD_TYPES

_PREAMBLE = re.compile(
    r"^\s*(?:(?:sure|certainly|of course|okay|ok)[!,.]?\s*)?"
    r"(?:here(?:'s| is| are)\b[^\n:]{0,80}:|[^\n:]{0,40}\b(?:review|text|article|example|answer|"
    r"response|headline|story|post|message)\b[^\n:]{0,20}:)\s*",
    re.IGNORECASE,
)
# Letter framing around a usable text: a salutation line and a sign-off with a name. Removing it
# keeps the review (the form filter rejects letters that remain letters after this).
_SALUTATION = re.compile(
    r"^\s*(?:(?:dear|hi|hello|hey|greetings)\b(?:(?:mr|mrs|ms|dr|prof)\.|[^\n.!?]){0,40}[,!.:]?\s*\n+|"
    r"(?:hi|hello|hey)(?: there)?[,!.]\s+)",
    re.IGNORECASE,
)
_SIGN_OFF = re.compile(
    r"\n+\s*(?:best(?: regards| wishes)?|kind regards|warm regards|regards|sincerely|cheers|thanks|"
    r"thank you)[,!.]?\s*(?:\n+[^\n]{0,40})?\s*$",
    re.IGNORECASE,
)
# A list item's marker: a reply that continues a list of examples ("- …", "4. …") starts with one.
_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d{1,2}[.)])[ \t]+(?=\S)")
_LEAD_LABEL = re.compile(r"^\s*(?:\*\*)?[A-Z][\w ]{0,30}(?:\*\*)?:\s+(?=\S)")
_QUOTES = "\"'“”‘’«»`"
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*(?=\s|$)")


def _strip_quotes(text: str) -> str:
    text = text.strip()
    while len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    if text and text[0] in _QUOTES and text.count(text[0]) == 1:
        text = text[1:].strip()
    if text and text[-1] in _QUOTES and text.count(text[-1]) == 1:
        text = text[:-1].strip()
    return text


def _drop_cut_fragment(text: str) -> str:
    """Cut after the last complete sentence; keep the text whole if it has none."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else text


def clean(raw: str, truncated: bool) -> tuple[str, str | None]:
    """(text, rejection reason or None)."""
    text = _LIST_MARKER.sub("", raw.strip(), count=1)
    text = _PREAMBLE.sub("", text, count=1)
    text = _LEAD_LABEL.sub("", text, count=1)
    unframed = _SIGN_OFF.sub("", _SALUTATION.sub("", text, count=1), count=1)
    if unframed != text and unframed:
        text = unframed[0].upper() + unframed[1:]
    text = _strip_quotes(text)
    if truncated:
        cut = _drop_cut_fragment(text)
        if cut == text and not _SENTENCE_END.search(text[-3:] + " "):
            return _strip_quotes(text), "truncated"
        text = _strip_quotes(cut)
    text = re.sub(r"[ \t]+", " ", text).strip()
    if not text:
        return "", "empty_output"
    return text, None


@functools.cache
def _schema(fields: tuple[tuple[str, str | tuple[str, ...]], ...]) -> type[BaseModel]:
    types = {
        name: (Literal[kind] if isinstance(kind, tuple) else FIELD_TYPES[kind], ...) for name, kind in fields
    }
    return create_model("StepOutput", **types)  # type: ignore[call-overload]


def parse_json(raw: str, fields: dict[str, str | list[str]]) -> dict[str, Any] | None:
    """The JSON object in a completion (prose or code fences around it allowed), typed by `fields`.

    None when there is no object, a field is missing or of the wrong type, or a string is empty.
    """
    start, end = raw.find("{"), raw.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(raw[start : end + 1])
        key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in fields.items())
        values = _schema(key).model_validate(data).model_dump()
    except (json.JSONDecodeError, ValidationError):
        return None
    if any(isinstance(v, str) and not v.strip() for v in values.values()):
        return None
    return {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
