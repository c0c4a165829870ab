"""How the label check's rejection rate depends on the size of the set it checks.

The plan-ahead probe checks a few dozen texts and the whole build a few hundred; the check's
classifier trains on the set it checks, so a small set is flagged more. This reruns the quality
stage (no quota) on random subsets of one finished run's generated records, three draws per
size, and prints the share flagged (rejected `label_mismatch` or relabelled).

    python benchmarks/labelcheck_size.py pipelines/sentiment.yaml runs/sentiment [--sizes 30 63 90]
"""

from __future__ import annotations

import argparse
import random

from rich.console import Console

from textsynth.embed import TextEmbedder
from textsynth.pipeline_file import load_pipeline
from textsynth.quality.chain import run_quality
from textsynth.records import Record
from textsynth.run import RunDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("run_dir")
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 45, 63, 90, 150, 250])
    parser.add_argument("--draws", type=int, default=3)
    args = parser.parse_args()
    pipeline = load_pipeline(args.pipeline)
    latest = {r.id: r for r in RunDir(args.run_dir).read_shards()}  # the last line of each record
    records = [r for r in latest.values() if r.text]
    embedder = TextEmbedder(pipeline.quality.embedding_model, Console(quiet=True))
    no_quota = {label.name: len(records) for label in pipeline.labels}

    def flagged(subset: list[Record]) -> float:
        out, _, _ = run_quality(subset, pipeline, no_quota, {}, lambda: None, embedder)
        hit = sum(r.reasons[:1] == ["label_mismatch"] or "relabelled_from" in r.fields for r in out)
        return hit / len(subset)

    print(f"{len(records)} generated records in {args.run_dir}")
    for size in [s for s in args.sizes if s < len(records)] + [len(records)]:
        draws = args.draws if size < len(records) else 1
        rates = [flagged(random.Random(k).sample(records, size)) for k in range(draws)]
        print(f"{size:5d}  flagged {sum(rates) / len(rates):.3f}  draws {[round(x, 3) for x in rates]}")


if __name__ == "__main__":
    main()
