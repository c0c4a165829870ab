"""The decode loop against an earlier revision of itself, or at other refill thresholds or batch
sizes, in one process.

The shipped sentiment pipeline's first `--n` planned requests (its own templates, seeds and
guidance) are generated on the embedded model by each variant in turn, `--rounds` times, the
order reversed every other round, so that the machine's drift falls on every variant alike.
Prints each variant's wall seconds per round, their median, and the median round's tokens/s as a
ratio to the first variant's (variants may sample other tokens: bf16 rows batched differently
differ in the last bits).

    python benchmarks/bench_decode.py --against REV [--n 128] [--rounds 4]
        (REV's textsynth/backends/decode.py, from git, against the working tree's)
    python benchmarks/bench_decode.py --refill 8 4 2 [--n 160] [--rounds 3]
        (start new rows once batch/8, batch/4, batch/2 slots are free)
    python benchmarks/bench_decode.py --batch 64 128 [--n 256] [--rounds 4]
        (at most 64, then 128 rows in flight)
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import textsynth.backends.transformers as transformers_backend
from textsynth.backends.base import Request
from textsynth.backends.decode import DecodeLoop
from textsynth.backends.transformers import TransformersBackend
from textsynth.hardware import cpu_class
from textsynth.pipeline import prepare

ROOT = Path(__file__).resolve().parents[1]


def loop_at(revision: str) -> type:
    """`DecodeLoop` as it was at `revision`, loaded beside the current one."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:textsynth/backends/decode.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "decode_then.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("decode_then", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["decode_then"] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module.DecodeLoop


def refilling_at(divisor: int) -> type:
    """`DecodeLoop` that starts new rows once batch/`divisor` slots are free."""

    class Loop(DecodeLoop):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.refill_at = max(1, self.batch_size // divisor)

    return Loop


def batched(size: int) -> type:
    """`DecodeLoop` with at most `size` rows in flight, whatever the pipeline sets."""

    class Loop(DecodeLoop):
        def __init__(self, model: object, eos: object, pad_id: int, batch_size: int, cache_arg: str) -> None:
            super().__init__(model, eos, pad_id, size, cache_arg)  # type: ignore[arg-type]

    return Loop


def main() -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--against", metavar="REV", help="a git revision whose decode loop to run first")
    which.add_argument("--refill", type=int, nargs="+", metavar="DIVISOR", help="batch divisors to compare")
    which.add_argument("--batch", type=int, nargs="+", metavar="ROWS", help="batch sizes to compare")
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    variants: dict[str, Callable[[], type]] = (
        {f"decode loop at {args.against}": lambda: loop_at(args.against), "working tree": lambda: DecodeLoop}
        if args.against
        else {f"refill at batch/{d}": (lambda d=d: refilling_at(d)) for d in args.refill}
        if args.refill
        else {f"batch {b}": (lambda b=b: batched(b)) for b in args.batch}
    )
    loops = {name: make() for name, make in variants.items()}
    prep = prepare(ROOT / "pipelines" / "sentiment.yaml", n=args.n)
    params = prep.pipeline.generation
    negatives = prep.templates.render_negatives  # as many other labels as a build contrasts
    requests = [
        Request(ex.id, prep.messages[ex.id], ex.seed, negatives(ex, params.guidance_labels))
        for ex in prep.planned
    ]
    backend = TransformersBackend(prep.pipeline.model)
    list(backend.generate(requests[:4], params))  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    tokens: dict[str, list[int]] = {name: [] for name in loops}
    for round_no in range(args.rounds):
        order = list(loops.items())
        for name, loop in order if round_no % 2 == 0 else order[::-1]:  # ABBA: drift falls on both
            transformers_backend.DecodeLoop = loop  # type: ignore[misc]
            start = time.perf_counter()
            done = list(backend.generate(requests, params))
            seconds[name].append(time.perf_counter() - start)
            tokens[name].append(sum(c.tokens for c in done))
            print(f"{name}: {seconds[name][-1]:.2f} s, {tokens[name][-1]} tokens", flush=True)
    rates = {name: statistics.median(t / s for t, s in zip(tokens[name], seconds[name])) for name in loops}
    first = next(iter(rates.values()))
    print(f"\n{args.n} guided requests, pipeline batch {backend.batch_size}, {args.rounds} rounds")
    for name, values in seconds.items():
        rounds = " / ".join(f"{v:.1f}" for v in values)
        print(
            f"{name:28s} {rounds}  median {statistics.median(values):.2f} s, {rates[name]:.1f} tokens/s"
            f"  {rates[name] / first:.3f}x the first"
        )


if __name__ == "__main__":
    main()
