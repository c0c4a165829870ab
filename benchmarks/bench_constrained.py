"""What grammar-constrained decoding costs per token, against free decoding in the same run.

JSON steps are decoded to the schema of their fields (textsynth/backends/grammar.py). This script
generates the same prompts with the same seeds and sampling parameters on the embedded model,
free and constrained, alternating, and prints:
- ms per generated token of each (median over repeats) and their ratio; the two runs end their
  rows at different lengths, so this ratio also carries how full the batch stays;
- the grammar's own work inside the constrained runs (filling each row's bitmask, masking the
  logits, advancing the matchers) in µs per constrained token and as a share of the run's time,
  the part of the cost that is the grammar's alone;
- how many outputs parse as the schema in each mode;
- with --engines: the per-token cost of the same JSON mask with xgrammar, llguidance and
  outlines-core (those installed) on the embedded tokenizer, over one fixed valid object, which is
  how xgrammar was chosen.

    python benchmarks/bench_constrained.py [--n 32] [--batch 32] [--repeats 3] [--engines]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from textsynth.backends import decode, grammar
from textsynth.backends.base import Request
from textsynth.backends.grammar import json_schema
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import GenerationParams, ModelConfig
from textsynth.hardware import cpu_class
from textsynth.parse import parse_json

FIELDS = {"question": "str", "answer": "str", "difficulty": "int", "factual": "bool"}
TOPICS = ("photosynthesis", "the printing press", "honeybees", "tides", "vaccines", "the Silk Road")
TOPICS += ("volcanoes", "compound interest", "glaciers", "the telescope", "rainbows", "bread yeast")
SAMPLE = {
    "question": "What do honeybees make from the nectar they collect?",
    "answer": "They make honey and store it in wax combs for the winter.",
    "difficulty": 2,
    "factual": True,
}


class Timer:
    """Wraps a function and adds up the seconds spent in it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start


def requests(n: int, schema: dict[str, Any] | None) -> list[Request]:
    ask = "Write one quiz question about {} and its answer as a JSON object with the keys {}."
    return [
        Request(
            f"r{i}",
            [{"role": "user", "content": ask.format(TOPICS[i % len(TOPICS)], ", ".join(FIELDS))}],
            1000 + i,
            schema=schema,
        )
        for i in range(n)
    ]


def decode_run(backend: TransformersBackend, reqs: list[Request], params: GenerationParams) -> dict[str, Any]:
    """One generate() over the requests with the grammar's functions timed."""
    fill, accept = Timer(grammar.masked), Timer(grammar.RowGrammar.accept)
    decode.masked = fill  # the name the loop calls
    grammar.RowGrammar.accept = lambda self, token: accept(self, token)  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        done = list(backend.generate(reqs, params))
        seconds = time.perf_counter() - start
    finally:
        decode.masked, grammar.RowGrammar.accept = fill.fn, accept.fn  # type: ignore[method-assign]
    tokens = sum(c.tokens for c in done)
    return {
        "ms_per_token": 1000 * seconds / tokens,
        "grammar_us_per_token": 1e6 * (fill.seconds + accept.seconds) / tokens,
        "grammar_share": (fill.seconds + accept.seconds) / seconds,
        "tokens": tokens,
        "parsed": sum(parse_json(c.text, FIELDS) is not None for c in done),
    }


def engines(tokenizer: Any, vocab: int) -> dict[str, dict[str, float]]:
    """µs per token to mask and advance one matcher over a fixed valid object, per engine."""
    schema = json_schema(FIELDS)
    ids = tokenizer(json.dumps(SAMPLE), add_special_tokens=False)["input_ids"]
    out: dict[str, dict[str, float]] = {}

    def timed(name: str, setup: Callable[[], Callable[[int], None]]) -> None:
        start = time.perf_counter()
        try:
            step = setup()
        except ImportError:
            return
        ready = time.perf_counter()
        for token in ids:
            step(token)
        out[name] = {
            "setup_s": ready - start,
            "us_per_token": 1e6 * (time.perf_counter() - ready) / len(ids),
        }

    def xgrammar() -> Callable[[int], None]:
        import xgrammar as xgr

        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab)
        compiled = xgr.GrammarCompiler(info).compile_json_schema(schema, any_whitespace=False)
        matcher, bitmask = xgr.GrammarMatcher(compiled), xgr.allocate_token_bitmask(1, vocab)

        def step(token: int) -> None:
            matcher.fill_next_token_bitmask(bitmask)
            matcher.accept_token(token)

        return step

    def llguidance() -> Callable[[int], None]:
        import llguidance
        import llguidance.hf
        import llguidance.torch

        tok = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab)
        g = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": True})
        matcher, bitmask = llguidance.LLMatcher(tok, g), llguidance.torch.allocate_token_bitmask(1, vocab)

        def step(token: int) -> None:
            llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
            matcher.consume_token(token)

        return step

    def outlines_core() -> Callable[[int], None]:
        from outlines_core import Guide, Index, Vocabulary
        from outlines_core.json_schema import build_regex_from_schema

        byte_of = _byte_decoder()
        tokens: dict[bytes, list[int]] = {}
        for text, i in tokenizer.get_vocab().items():
            if i not in tokenizer.all_special_ids:
                tokens.setdefault(bytes(byte_of.get(c, 0) for c in text), []).append(i)
        vocabulary = Vocabulary(tokenizer.eos_token_id, tokens)
        guide = Guide(Index(build_regex_from_schema(json.dumps(schema), r"[ ]?"), vocabulary))

        def step(token: int) -> None:
            mask = torch.zeros(vocab, dtype=torch.bool)
            mask[torch.tensor(guide.get_tokens())] = True
            guide.advance(token)

        return step

    timed("xgrammar", xgrammar)
    timed("llguidance", llguidance)
    timed("outlines-core", outlines_core)
    return out


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet, character → byte."""
    keep = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(keep, chars)}


def _cpu() -> str:
    """The CPU's model name, as lscpu prints it."""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="prompts per run")
    parser.add_argument("--batch", type=int, default=32, help="rows decoded together")
    parser.add_argument("--repeats", type=int, default=3, help="free/constrained pairs")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--engines", action="store_true", help="also compare grammar engines")
    args = parser.parse_args()

    backend = TransformersBackend(ModelConfig(batch_size=args.batch))
    params = GenerationParams(max_new_tokens=args.max_new_tokens, temperature=0.7)
    free, constrained = requests(args.n, None), requests(args.n, json_schema(FIELDS))
    decode_run(backend, constrained[:4], params)  # warm-up: compiles the schema, indexes the tokenizer
    runs: dict[str, list[dict[str, Any]]] = {"free": [], "constrained": []}
    for _ in range(args.repeats):
        runs["free"].append(decode_run(backend, free, params))
        runs["constrained"].append(decode_run(backend, constrained, params))

    print(f"{_cpu()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{args.n} prompts, batch {args.batch}, dtype {backend.dtype}, {args.repeats} repeats (median)")
    print(f"{'mode':<12} {'ms/token':>9} {'grammar µs/token':>17} {'tokens':>7} {'parsed':>7}")
    median = {}
    for mode, results in runs.items():
        median[mode] = statistics.median(r["ms_per_token"] for r in results)
        grammar_us = statistics.median(r["grammar_us_per_token"] for r in results)
        tokens, parsed = results[-1]["tokens"], results[-1]["parsed"]
        print(f"{mode:<12} {median[mode]:>9.2f} {grammar_us:>17.1f} {tokens:>7} {parsed:>4}/{args.n}")
    share = statistics.median(r["grammar_share"] for r in runs["constrained"])
    print(f"constrained / free ms per token: {median['constrained'] / median['free']:.3f}")
    print(f"grammar work: {100 * share:.1f} % of the constrained run's time (mask, apply, advance)")
    if args.engines:
        vocab = backend.loaded.model.get_output_embeddings().out_features
        print(f"\n{'engine':<14} {'setup s':>8} {'mask+advance µs/token':>22}")
        for name, r in engines(backend.loaded.tokenizer, vocab).items():
            print(f"{name:<14} {r['setup_s']:>8.3f} {r['us_per_token']:>22.1f}")


if __name__ == "__main__":
    main()
