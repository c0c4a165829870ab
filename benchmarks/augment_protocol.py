"""Does the synthetic data beat what the user has without it? The augmentation protocol.

A user with a small real set (data/banking/seeds.csv: 8 messages per intent) trains MiniLM +
logistic regression (the classifier of `textsynth compare`) on it; what does the build add? For
each stored build this reads accuracy on a real half the build never saw (data/banking/tune.csv
to tune, confirm.csv only to confirm a decision) of classifiers trained on:

  seeds             the 80 real seed messages alone
  label names       no training text: each message gets the label whose name is most similar
                    (the zero-shot floor synthetic data alone must beat)
  kept              the build's exported rows alone
  seeds + kept      both
  generated         every generated text (before the quality stage), and with the seeds

Builds of several seeds are pooled: the mean accuracy per arm, each seed's value, and a 95 %
bootstrap interval over the real test rows of the mean difference against the seeds alone.

  python benchmarks/augment_protocol.py build --seeds 1 2 3 --n 300   # builds, then evaluates
  python benchmarks/augment_protocol.py evaluate runs/augment/*       # stored builds
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from textsynth.embed import embed
from textsynth.evidence import survivors
from textsynth.records import Record

ROOT = Path(__file__).resolve().parents[1]
BANKING = ROOT / "data" / "banking"
PIPELINE = ROOT / "pipelines" / "banking_topup.yaml"
Split = tuple[list[str], list[str]]


def read(name: str) -> Split:
    with (BANKING / name).open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def generated_and_kept(run_dir: Path) -> tuple[Split, Split]:
    records = [Record.from_json(x) for x in (run_dir / "records.jsonl").read_text().splitlines()]
    funnel = json.loads((run_dir / "funnel.json").read_text())
    stages = survivors(records, funnel)
    return stages[0][1], stages[-1][1]


class Judge:
    """Fits MiniLM + logistic regression on a training set and marks each test row right or wrong."""

    def __init__(self, test: Split) -> None:
        self.test = test
        self.cache: dict[str, np.ndarray] = {}
        self.truth = np.array(test[1])
        self.x_test = self.vectors(test[0])

    def vectors(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            self.cache.update(zip(missing, embed(missing)))
        return np.stack([self.cache[t] for t in texts])

    def correct(self, train: Split) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(max_iter=2000, C=4.0, random_state=0)
        clf.fit(self.vectors(train[0]), train[1])
        return clf.predict(self.x_test) == self.truth

    def label_names(self, labels: list[str]) -> np.ndarray:
        names = embed([lab.replace("_", " ") for lab in labels])
        return np.array(labels)[(self.x_test @ names.T).argmax(1)] == self.truth


def arms(judge: Judge, seeds: Split, run_dir: Path) -> dict[str, np.ndarray]:
    generated, kept = generated_and_kept(run_dir)

    def plus(a: Split, b: Split) -> Split:
        return a[0] + b[0], a[1] + b[1]

    return {
        "seeds": judge.correct(seeds),
        "label names": judge.label_names(sorted(set(seeds[1]))),
        "kept": judge.correct(kept),
        "seeds + kept": judge.correct(plus(seeds, kept)),
        "generated": judge.correct(generated),
        "seeds + generated": judge.correct(plus(seeds, generated)),
    }


def report(runs: list[Path], half: str, draws: int = 2000) -> None:
    seeds, test = read("seeds.csv"), read(half)
    judge = Judge(test)
    per_run = {run: arms(judge, seeds, run) for run in runs}
    picks = np.random.default_rng(0).integers(0, len(test[0]), size=(draws, len(test[0])))
    print(
        f"{len(runs)} builds, accuracy on {half} ({len(test[0])} real messages), MiniLM + logistic regression"
    )
    print("| arm | mean | per build | Δ vs seeds [95 %] | Δ vs label names [95 %] |\n|---|---|---|---|---|")
    for arm in per_run[runs[0]]:
        mean = np.mean([per_run[r][arm] for r in runs], axis=0)  # per test row, over builds
        cells = []
        for base in ("seeds", "label names"):
            diff = mean - np.mean([per_run[r][base] for r in runs], axis=0)
            low, high = np.percentile(diff[picks].mean(axis=1), [2.5, 97.5])
            cells.append(f"{diff.mean():+.3f} [{low:+.3f}, {high:+.3f}]")
        each = ", ".join(f"{per_run[r][arm].mean():.3f}" for r in runs)
        print(f"| {arm} | {mean.mean():.3f} | {each} | {cells[0]} | {cells[1]} |")


def cmd_build(args: argparse.Namespace) -> None:
    from textsynth.pipeline import run_build
    from textsynth.pipeline_file import load_pipeline

    runs = []
    for seed in args.seeds:
        pipeline = load_pipeline(args.pipeline)
        for key, value in (kv.split("=", 1) for kv in args.set):  # e.g. generation.guidance_scale=2
            pipeline = pipeline.updated(key, json.loads(value))
        out = Path(args.out) / f"s{seed}"
        result = run_build(
            pipeline,
            n=args.n,
            seed=seed,
            out=out,
            quiet=True,
            pipeline_path=args.pipeline,
            cache_path=args.cache,
        )
        s = result.summary
        print(
            f"{out}: generated {s.generated} in {s.gen.seconds:.0f} s, kept {s.kept}, wall {s.wall_s:.0f} s"
        )
        runs.append(out)
    report(runs, args.half)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    half = {"default": "tune.csv", "help": "tune.csv (tuning) or confirm.csv (confirming a decision)"}
    commands = parser.add_subparsers(dest="command", required=True)
    e = commands.add_parser("evaluate")
    e.add_argument("runs", nargs="+")
    e.add_argument("--half", **half)
    b = commands.add_parser("build")
    b.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    b.add_argument("--n", type=int, default=300)
    b.add_argument("--pipeline", type=Path, default=PIPELINE, help="another pipeline on the same labels")
    b.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. generation.guidance_scale=2")
    b.add_argument("--out", default="runs/augment")
    b.add_argument("--cache", default=None, help="a completion cache shared by arms (same requests reused)")
    b.add_argument("--half", **half)
    args = parser.parse_args()
    if args.command == "build":
        cmd_build(args)
    else:
        report([Path(r) for r in args.runs], args.half)


if __name__ == "__main__":
    main()
