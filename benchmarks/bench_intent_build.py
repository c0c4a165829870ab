"""A new user's 10-intent build: how long the label check takes against generation.

The `intent` starter (`textsynth init`) with its four labels replaced by the ten Banking77 top-up
intents of `pipelines/banking_topup.yaml` (names and descriptions only: no seed examples), built
at n = 300 with the starter's settings and the label check's zero-shot signal on. The intent names
share their first token, so every text is scored against every name as a whole continuation. The
build runs in the dtype `auto` picks on this machine; the CPU class is printed with the result.

    python benchmarks/bench_intent_build.py [--n 300] [--seed 1] [--plan-ahead auto|true|false]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import yaml

from textsynth.hardware import cpu_class
from textsynth.models import resolve_dtype
from textsynth.pipeline import run_build

ROOT = Path(__file__).resolve().parents[1]
STARTER = ROOT / "textsynth" / "starters" / "intent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--plan-ahead", choices=["auto", "true", "false"], default="auto", help="quality.plan_ahead"
    )
    args = parser.parse_args()
    intents = yaml.safe_load((ROOT / "pipelines" / "banking_topup.yaml").read_text())["labels"]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(STARTER / "prompts", Path(tmp) / "prompts")
        data = yaml.safe_load((STARTER / "pipeline.yaml").read_text())
        data["labels"] = [{"name": x["name"], "description": x["description"]} for x in intents]
        data.setdefault("quality", {}).setdefault("label_check", {})["zero_shot"] = True
        data["quality"]["plan_ahead"] = {"true": True, "false": False}.get(args.plan_ahead, "auto")
        path = Path(tmp) / "pipelines" / "intent10.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        result = run_build(path, n=args.n, seed=args.seed, out=Path(tmp) / "run", quiet=False)
        summary = json.loads((result.run_dir / "summary.json").read_text())
    generate = summary["phases_s"].get("generate", 0.0) + summary["phases_s"].get("top_up", 0.0)
    label_check = summary["stages_s"].get("label_check", 0.0)
    print(
        json.dumps(
            {
                "cpu": cpu_class(),
                "dtype": resolve_dtype("auto"),
                "n": args.n,
                "plan_ahead": args.plan_ahead,
                "top_up_rounds": summary["top_up_rounds"],
                "requests": summary["planned"],
                "kept": summary["kept"],
                "wall_s": summary["wall_s"],
                "generation_s": summary["generation_s"],
                "generate_and_top_up_phases_s": round(generate, 1),
                "label_check_s": label_check,
                "stages_s": summary["stages_s"],
                "label_check_over_generation": round(label_check / summary["generation_s"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
