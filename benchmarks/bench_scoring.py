"""Label-check choice scoring: batches of `batch_size` rows against padded-token batches.

The zero-shot label check scores each text's label names with the generating model, one forward
pass per batch of length-sorted prompts. A batch of 64 rows is padded to its longest row and
the pass is compute-bound, so textsynth caps each batch at `SCORE_TOKENS` padded tokens. This
times both on the same prompts (the label check's prompt for the first --n tuning sentences of
data/yelp, or for the texts of a build's records.jsonl with --records, under the shipped
sentiment labels), in one process, alternating, and prints the ratio. Real sentences are short
and alike in length; a build's generated texts vary more, so padding costs them more.

    python benchmarks/bench_scoring.py [--n 80] [--repeats 3] [--records RUN_DIR/records.jsonl]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from textsynth.backends import transformers as backend_module
from textsynth.backends.transformers import TransformersBackend
from textsynth.hardware import cpu_class
from textsynth.pipeline_file import load_pipeline
from textsynth.quality.labelcheck import zero_shot_prompt

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--records", type=Path, help="score the texts of this records.jsonl instead")
    args = parser.parse_args()
    pipeline = load_pipeline(ROOT / "pipelines" / "sentiment.yaml")
    if args.records:
        rows = [json.loads(line) for line in args.records.read_text(encoding="utf-8").splitlines()]
        texts = [r["text"] for r in rows if r.get("text")][: args.n]
    else:
        lines = (ROOT / "data" / "yelp" / "tune.tsv").read_text(encoding="utf-8").splitlines()[: args.n]
        texts = [line.rpartition("\t")[0] for line in lines]
    prompts = [zero_shot_prompt(pipeline, text) for text in texts]
    names = [lab.name for lab in pipeline.labels]
    backend = TransformersBackend(pipeline.model)
    backend.score(prompts[:4], names)  # warm up
    budgets = {"rows_of_batch_size": 10**9, "padded_tokens": backend_module.SCORE_TOKENS}
    times: dict[str, list[float]] = {name: [] for name in budgets}
    scores: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, budget in budgets.items():
            backend_module.SCORE_TOKENS = budget
            start = time.perf_counter()
            scores[name] = backend.score(prompts, names)
            times[name].append(time.perf_counter() - start)
    backend_module.SCORE_TOKENS = budgets["padded_tokens"]
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{name:20s} {median:6.2f} s (median of {args.repeats}, {len(prompts)} prompts)")
    gap = float(np.abs(scores["padded_tokens"] - scores["rows_of_batch_size"]).max())
    ratio = statistics.median(times["rows_of_batch_size"]) / statistics.median(times["padded_tokens"])
    rows = backend.batch_size
    print(f"padded-token batches vs {rows}-row batches: {ratio:.2f}× faster; max |Δ log p| {gap:.3f}")


if __name__ == "__main__":
    main()
