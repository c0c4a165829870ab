"""The shipped sentiment build with the plan-ahead probe and without it, seed by seed, in one process.

`quality.plan_ahead: true` checks a probe and over-generates by the share it lost; `false` checks
the whole plan once and tops up. Prints each build's wall time, requests and top-up rounds; the
first build of the process also loads the model (its `load` phase, which the comparison leaves
out). Behind `PLAN_AHEAD_AUTO_MAX` in textsynth/quotas.py.

    python benchmarks/bench_plan_ahead.py --n 256 [--seeds 7 8 9] [--arms true false]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from textsynth.hardware import cpu_class
from textsynth.pipeline import run_build
from textsynth.pipeline_file import load_pipeline

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "sentiment.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--arms", nargs="+", choices=["true", "false"], default=["true", "false"])
    args = parser.parse_args()
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    for seed in args.seeds:
        for arm in args.arms:
            pipeline = load_pipeline(PIPELINE).updated("quality.plan_ahead", arm == "true")
            with tempfile.TemporaryDirectory(prefix="textsynth-bench-") as tmp:
                start = time.perf_counter()
                result = run_build(
                    pipeline, n=args.n, seed=seed, out=Path(tmp) / "run", quiet=True, pipeline_path=PIPELINE
                )
                wall = time.perf_counter() - start
            s = result.summary
            phases = ", ".join(f"{k} {v:.1f}" for k, v in s.phases.items())
            print(
                f"n {args.n} seed {seed} plan_ahead {arm}: wall {wall:.1f} s "
                f"(without load {wall - s.phases.get('load', 0.0):.1f}), requests {s.generated}, "
                f"kept {s.kept}, top-up rounds {s.top_up_rounds}; {phases}",
                flush=True,
            )


if __name__ == "__main__":
    main()
