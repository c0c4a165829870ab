"""Choice scoring with many labels that share a first token (the ten top-up intents).

The label check's zero-shot signal scores every label name as the reply to each text. When the
names share their first token ("top_up_failed", "top_up_limits", …) the first token cannot tell
them apart, and each choice is scored as a whole continuation. The baseline runs every (prompt,
choice) pair as its own full sequence, in length-sorted padded batches (the earlier path);
textsynth prefills each prompt once and continues every choice from its KV cache. Both run on
the same prompts, in one process, in the dtype `auto` picks on this machine, alternating.

    python benchmarks/bench_intent_scoring.py [--n 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from textsynth.backends.transformers import SCORE_TOKENS, TransformersBackend
from textsynth.hardware import cpu_class
from textsynth.pipeline_file import load_pipeline
from textsynth.quality.labelcheck import zero_shot_prompt

ROOT = Path(__file__).resolve().parents[1]


@torch.inference_mode()
def full_sequences(backend: TransformersBackend, prompts: list, choices: list[str]) -> np.ndarray:
    """Every (prompt, choice) pair as one sequence, left-padded, in batches of SCORE_TOKENS."""
    tok, model = backend.loaded.tokenizer, backend.loaded.model
    choice_ids = [tok(c, add_special_tokens=False)["input_ids"] for c in choices]
    pairs = sorted(
        ((i, j, backend.encode(p) + c) for i, p in enumerate(prompts) for j, c in enumerate(choice_ids)),
        key=lambda r: len(r[2]),
    )
    out = np.zeros((len(prompts), len(choices)))
    batch: list = []
    for pair in [*pairs, None]:
        if batch and (pair is None or (len(batch) + 1) * len(pair[2]) > SCORE_TOKENS):
            width = max(len(s) for _, _, s in batch)
            ids = torch.tensor([[tok.pad_token_id] * (width - len(s)) + s for _, _, s in batch])
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for _, _, s in batch])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logp = torch.log_softmax(
                model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float(), -1
            )
            for row, (i, j, _) in enumerate(batch):
                m = len(choice_ids[j])
                targets = torch.tensor(choice_ids[j])
                out[i, j] = float(logp[row, -(m + 1) : -1].gather(-1, targets[:, None]).sum())
            batch = []
        if pair is not None:
            batch.append(pair)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto", help="auto (what a build runs here), float32, bfloat16")
    args = parser.parse_args()
    pipeline = load_pipeline(ROOT / "pipelines" / "banking_topup.yaml")
    pipeline = pipeline.updated("model.dtype", args.dtype)
    with (ROOT / "data" / "banking" / "tune.csv").open(encoding="utf-8", newline="") as f:
        texts = [row["text"] for row in csv.DictReader(f)][: args.n]
    prompts = [zero_shot_prompt(pipeline, text) for text in texts]
    names = pipeline.label_names
    backend = TransformersBackend(pipeline.model)
    backend.score(prompts[:2], names)  # warm up
    methods = {
        "full_sequences": lambda: full_sequences(backend, prompts, names),
        "textsynth_shared_prefix": lambda: backend.score(prompts, names),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    scores = {}
    for _ in range(args.repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            scores[name] = run()
            times[name].append(time.perf_counter() - start)
    print(f"CPU: {cpu_class()}; dtype {backend.dtype}; {len(prompts)} texts × {len(names)} labels")
    for name, seconds in times.items():
        print(f"{name:24s} {statistics.median(seconds):6.2f} s (median of {args.repeats})")
    ratio = statistics.median(times["full_sequences"]) / statistics.median(times["textsynth_shared_prefix"])
    full, shared = scores["full_sequences"], scores["textsynth_shared_prefix"]
    gap = float(np.abs(full - shared).max())
    agree = float((full.argmax(1) == shared.argmax(1)).mean())
    print(
        f"shared prefix vs full sequences: {ratio:.2f}× faster; max |Δ log p| {gap:.3f}; "
        f"same choice {agree:.3f}"
    )


if __name__ == "__main__":
    main()
