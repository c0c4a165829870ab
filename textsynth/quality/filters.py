"""Cheap per-record filters: length, refusals, form, prompt echo, language, degeneration, PII.

Each is checked against real text too: on the 1,000 Yelp sentences in data/yelp the default
filters reject under 1 % (tests/test_filters.py), so they remove model artefacts, not reviews.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from textsynth.quality.base import Filter, Stage
from textsynth.quality_config import FilterConfig
from textsynth.records import Record

_WORD = re.compile(r"\w+(?:'\w+)?")

_CANNOT = r"(?:can(?:'|no)?t|cannot|won'?t|am unable to|'m unable to|am not able to|'m not able to)"
_TASK = (
    r"(?:help(?!\s+but)|assist|write|create|provide|generate|produce|fulfil+|comply|complete|do that|"
    r"continue)"
)
# A reply that declines the task, not any sentence with "sorry" or "can't" ("I'm sorry I bought it",
# "I can't recommend it" are reviews): AI self-reference, or a decline of the task itself.
DECLINE = re.compile(
    rf"\bas an ai\b|\bas a (?:large )?language model\b|\bi(?:'m| am) (?:just )?an ai\b|"
    rf"^\W*(?:(?:i'?m |i am )?sorry|i apologi[sz]e|unfortunately)?[,.!]?\s*(?:but\s+)?"
    rf"i {_CANNOT}\s+{_TASK}\b|"
    rf"\bi {_CANNOT}\s+(?:fulfil+|comply with|complete|assist with|help with)\s+"
    r"(?:this|that|your)\s+request\b|"
    r"\bi must decline\b",
    re.IGNORECASE,
)
# Texts of another form than the one asked for, each with its own reason.
FORMS: dict[str, re.Pattern[str]] = {
    "assistant_chatter": re.compile(
        r"^\W*(?:sure|certainly|of course|absolutely)[!,.]|"
        r"^\W*here(?:'s| is| are)\s+(?:a|an|the|your|one|some|my)\s+(?:\w+\s+){0,3}"
        r"(?:review|sentence|text|example|response|version|description)\b|"
        r"\bi hope (?:this|that) helps\b|\blet me know if\b|\bfeel free to (?:ask|let me know)\b",
        re.IGNORECASE,
    ),
    "letter": re.compile(
        r"^\W*(?:dear|hi|hello|hey|greetings|to whom it may concern)\b[^.!?\n]{0,40}[,:!.\n-]|^\W*re:|"
        r"^\W*[A-Z][a-z]+,\s*\n|"
        r"\b(?:best|kind|warm)\s+regards\b|\bsincerely,|\byours (?:truly|sincerely)\b|"
        r"\bthank you for your (?:time|attention|consideration|feedback|business)\b",
        re.IGNORECASE,
    ),
    "meta_description": re.compile(
        r"^\W*(?:in )?(?:the|this) (?:review(?:er)?|text|sentence|response|writer|author|user)\b(?! of)|"
        r"\bthe reviewer\b|"
        r"\b(?:the|this) (?:review|text|sentence) (?:is|was) (?:written|positive|negative|neutral|mixed)\b|"
        r"\bwritten in an? (?:\w+ ){0,2}tone\b|\b(?:positive|negative|neutral) (?:sentiment|tone)\b|"
        r"^\W*this is an? (?:\w+ ){0,2}review\b|\b(?:the|this) original (?:review|text)\b",
        re.IGNORECASE,
    ),
    "placeholder": re.compile(r"\[[A-Za-z][\w .'/-]{0,30}\]|<[A-Za-z][\w ]{0,20}>|\{[A-Za-z_][\w ]{0,20}\}"),
}
TEMPLATE_MARKUP = re.compile(r"\{\{|\}\}|\{%|%\}|<\|im_(?:start|end)\|>|\b(?:system|user|assistant):", re.I)

PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "card": re.compile(r"\b\d(?:[ -]?\d){12,18}\b"),
    "phone": re.compile(r"(?<!\w)(?:\+?\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]?\d{4}(?!\w)"),
    "ip": re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    "address": re.compile(
        r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|"
        r"Court|Ct|Way|Place|Pl)\b"
    ),
}


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_pii(text: str) -> list[tuple[str, str]]:
    """(kind, matched text) for every PII span; card numbers must pass the Luhn check."""
    found = []
    for kind, pattern in PII_PATTERNS.items():
        for match in pattern.finditer(text):
            span = match.group(0)
            if kind == "card" and not _luhn_ok(re.sub(r"\D", "", span)):
                continue
            found.append((kind, span))
    return found


class LengthFilter(Filter):
    name = "length"

    def __init__(self, min_words: int, max_words: int) -> None:
        super().__init__()
        self.min_words, self.max_words = min_words, max_words

    def check(self, record: Record) -> str | None:
        n = len(words(record.text or ""))
        if n < self.min_words:
            return "too_short"
        return "too_long" if n > self.max_words else None


class RefusalFilter(Filter):
    name = "refusal"

    def check(self, record: Record) -> str | None:
        return "refusal" if DECLINE.search(record.text or "") else None


class FormFilter(Filter):
    """Texts of another form than asked: assistant chatter, letters, descriptions of the text or
    the task, unfilled placeholders."""

    name = "form"

    def check(self, record: Record) -> str | None:
        text = record.text or ""
        return next((reason for reason, pattern in FORMS.items() if pattern.search(text)), None)


class EchoFilter(Filter):
    """The output repeats the instruction (a long run of prompt words) or leaks template markup."""

    name = "echo"

    def __init__(self, prompts: dict[str, str], run: int = 8) -> None:
        super().__init__()
        self.prompts, self.run_length = prompts, run

    def check(self, record: Record) -> str | None:
        text = record.text or ""
        if TEMPLATE_MARKUP.search(text):
            return "template_leak"
        prompt = words(self.prompts.get(record.id, ""))
        grams = {tuple(prompt[i : i + self.run_length]) for i in range(len(prompt) - self.run_length + 1)}
        out = words(text)
        for i in range(len(out) - self.run_length + 1):
            if tuple(out[i : i + self.run_length]) in grams:
                return "prompt_echo"
        joined = f" {' '.join(prompt)} "
        for sentence in re.split(r"[.!?\n]+", text):
            said = words(sentence)
            if len(said) >= 3 and f" {' '.join(said)} " in joined:
                return "prompt_echo"  # a whole sentence of the instruction, shorter than the run
        return None


@functools.cache
def _language_identifier() -> Any:
    """Loaded once per process (0.4 s): every quality round builds its filters again."""
    from py3langid import langid

    return langid.LanguageIdentifier.from_modelpath(langid.MODEL_DIR / langid.MODEL_FILE, norm_probs=True)


class LanguageFilter(Filter):
    """Language ID with py3langid, which ships its model in the wheel (works offline)."""

    name = "language"

    def __init__(self, language: str) -> None:
        super().__init__()
        self.language = language
        self.identifier = _language_identifier()

    def check(self, record: Record) -> str | None:
        lang, prob = self.identifier.classify(record.text or "")
        record.scores["language_prob"] = round(float(prob), 4)
        return f"wrong_language:{lang}" if lang != self.language and prob > 0.8 else None


class RepetitionFilter(Filter):
    """Degenerate loops: too large a share of the word 3-grams are repeats."""

    name = "repetition"

    def __init__(self, max_fraction: float) -> None:
        super().__init__()
        self.max_fraction = max_fraction

    def check(self, record: Record) -> str | None:
        w = words(record.text or "")
        grams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
        if len(grams) < 4:
            return None
        repeats = sum(c - 1 for c in Counter(grams).values())
        return "repetition" if repeats / len(grams) > self.max_fraction else None


class JudgeFilter(Filter):
    """Rejects `low_judge_score` when the mean of a judge step's criteria is below its `min_score`."""

    name = "judge"

    def __init__(self, min_score: float, criteria: list[str]) -> None:
        super().__init__()
        self.min_score = min_score
        self.criteria = criteria

    def check(self, record: Record) -> str | None:
        mean = sum(record.scores.get(f"judge_{c}", 0.0) for c in self.criteria) / len(self.criteria)
        return "low_judge_score" if mean < self.min_score else None


def _raw(record: Record) -> list[Any]:
    """The raw completions (not fingerprints or ids, whose hex digits can look like numbers)."""
    steps = record.generation.get("steps", {})
    return [record.generation.get("raw"), *(s.get("raw") for s in steps.values())]


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` with `fn` applied to every string inside it, nested dicts and lists included."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


class PiiFilter(Filter):
    """Reject, or redact in place (`[EMAIL]`, ...), personal data the model made up or copied."""

    name = "pii"

    def __init__(self, policy: str) -> None:
        super().__init__()
        self.policy = policy

    def check(self, record: Record) -> str | None:
        hits: list[tuple[str, str]] = []
        _map_strings([record.text, record.fields, _raw(record)], lambda s: hits.extend(find_pii(s)) or s)
        found = sorted(set(hits), key=lambda h: -len(h[1]))
        if not found:
            return None
        kinds = sorted({k for k, _ in found})
        if self.policy == "reject":
            return "pii:" + ",".join(kinds)

        def redact(text: str) -> str:
            for kind, span in found:
                text = text.replace(span, f"[{kind.upper()}]")
            return text

        record.text = _map_strings(record.text, redact)
        record.fields = _map_strings(record.fields, redact)  # `text` and every step output
        gen = record.generation
        if "raw" in gen:
            gen["raw"] = _map_strings(gen["raw"], redact)
        for step in gen.get("steps", {}).values():
            step["raw"] = _map_strings(step.get("raw"), redact)
        record.fields["pii_redacted"] = kinds
        return None


def build_filters(config: FilterConfig, prompts: dict[str, str]) -> list[Stage]:
    """The filter stages a pipeline's config asks for, in a fixed order."""
    stages: list[Stage] = [LengthFilter(config.min_words, config.max_words)]
    if config.refusal:
        stages.append(RefusalFilter())
    if config.form:
        stages.append(FormFilter())
    if config.echo:
        stages.append(EchoFilter(prompts))
    if config.language:
        stages.append(LanguageFilter(config.language))
    stages.append(RepetitionFilter(config.max_repeated_ngrams))
    if config.pii != "off":
        stages.append(PiiFilter(config.pii))
    return stages
