"""The dev protocol: every quality decision judged by real-data accuracy, never tested where tuned.

data/yelp/tune.tsv is the half every threshold, weight and default is tuned on; confirm.tsv is
read only with --half confirm.tsv, to check a decision once it is made. Subcommands:

  build     build shipped pipelines at n and each guidance scale (seed examples come from the
            tuning half), then print per-step accuracy on the chosen half
  evaluate  per-step accuracy of existing run directories (rebuild first to apply new
            quality settings to stored generations: generation is reused from the shards)
  pool      the mean per-step difference over several run directories (seeds), one interval
  arms      kept rows of two configurations built with the same seeds, paired, pooled
  labelcheck  the label check on real sentences with 10 % of labels flipped: precision and
            recall of what it flags, per signal combination
  variants  the label check rerun with other settings, or the quota keeping other extras, on
            stored builds (no generation): each variant's kept rows against all generated,
            paired by build and pooled
  filters   what the default filters reject among the 1,000 real Yelp sentences, and why
  headroom  what any label-based quality stage could gain on stored builds: an oracle trained on
            one real half drops every generated text it disagrees with, read on the other half;
            with the real-data accuracy of random subsets of all generated rows by size
  ahead     each stored build's plan-ahead probe replayed (its label check and dedup on the probe
            alone, in planned order, as the build ran them), what other weights of the probe's
            label-check losses would have asked ahead, and which labels would then fall short

Example: python benchmarks/dev_protocol.py build --pipeline sentiment --n 300 --gamma 1 2
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from textsynth.embed import embed
from textsynth.evidence import SAME_SIZE, pooled, step_accuracy, step_table, survivors
from textsynth.pipeline_file import load_pipeline
from textsynth.quality_config import FilterConfig
from textsynth.records import Record

ROOT = Path(__file__).resolve().parents[1]
YELP = ROOT / "data" / "yelp"
LABELS = {"0": "negative", "1": "positive"}


def real(half: str) -> tuple[list[str], list[str]]:
    rows = [line.rpartition("\t") for line in (YELP / half).read_text(encoding="utf-8").splitlines()]
    return [t for t, _, _ in rows], [LABELS[lab] for _, _, lab in rows]


def steps(run_dir: Path) -> list[tuple[str, tuple[list[str], list[str]]]]:
    """(step, (texts, labels)) of one run's survivors, positive/negative only."""
    records = [Record.from_json(x) for x in (run_dir / "records.jsonl").read_text().splitlines()]
    funnel = json.loads((run_dir / "funnel.json").read_text())
    return [(step, polar(texts, labels)) for step, (texts, labels) in survivors(records, funnel)]


def polar(texts: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
    """The positive and negative texts with their labels: the real halves have no neutral."""
    pairs = [(t, lab) for t, lab in zip(texts, labels) if lab in LABELS.values()]
    return [t for t, _ in pairs], [lab for _, lab in pairs]


def accuracy(stages: list, half: str, seed: int = 0, replicates: bool = False) -> list[dict]:
    """Accuracy on one real half of classifiers trained on each stage's texts."""
    test = real(half)
    every = list(dict.fromkeys(test[0] + [t for _, s in stages for t in s[0]]))
    vectors = dict(zip(every, embed(every)))
    return step_accuracy(stages, test, vectors, seed, replicates)


def evaluate(run_dir: Path, half: str, seed: int = 0, replicates: bool = False) -> list[dict]:
    """Per-step accuracy of one run on one real half (positive/negative only)."""
    return accuracy(steps(run_dir), half, seed, replicates)


def markdown(title: str, table: tuple[str, list[str], list[list]]) -> str:
    caption, header, rows = table
    lines = [f"**{title}**: {caption}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pass_rate(run_dir: Path) -> str:
    funnel = json.loads((run_dir / "funnel.json").read_text())
    total = funnel["total"]
    if "label_confirmed" not in total:
        return "label check off"
    relabelled = sum(1 for line in (run_dir / "records.jsonl").open() if '"relabelled_from"' in line)
    return (
        f"label check kept {total['label_confirmed']}/{total['passed_filters']} "
        f"({total['label_confirmed'] / max(total['passed_filters'], 1):.1%}), relabelled {relabelled}"
    )


def cmd_build(args: argparse.Namespace) -> None:
    from textsynth.pipeline import run_build

    for gamma in args.gamma:
        pipeline = load_pipeline(ROOT / "pipelines" / f"{args.pipeline}.yaml")
        update = {
            "guidance_scale": gamma,
            "guidance_tokens": args.guidance_tokens,
            "guidance_labels": args.guidance_labels,
        }
        if args.length_push is not None:
            update["length_push"] = args.length_push
        pipeline = pipeline.model_copy(update={"generation": pipeline.generation.model_copy(update=update)})
        seeds = pipeline.seed_examples
        if args.loop_rounds is not None and seeds is not None:
            loop = seeds.loop.model_copy(update={"rounds": args.loop_rounds})
            pipeline = pipeline.model_copy(update={"seed_examples": seeds.model_copy(update={"loop": loop})})
        horizon = f"-t{args.guidance_tokens}" if args.guidance_tokens else ""
        horizon += f"-l{args.guidance_labels}" if args.guidance_labels else ""
        horizon += f"-loop{args.loop_rounds}" if args.loop_rounds is not None else ""
        push = f"-p{args.length_push}" if args.length_push is not None else ""
        out = Path(args.out) / f"{args.pipeline}-n{args.n}-s{args.seed}-g{gamma}{horizon}{push}"
        result = run_build(
            pipeline,
            n=args.n,
            seed=args.seed,
            out=out,
            quiet=True,
            pipeline_path=ROOT / "pipelines" / f"{args.pipeline}.yaml",
        )
        s = result.summary
        print(
            f"\n{out.name}: generated {s.generated} ({s.gen.seconds:.0f} s, {s.examples_per_s:.2f} ex/s), "
            f"kept {s.kept}, wall {s.wall_s:.0f} s; {pass_rate(out)}"
        )
        rows = evaluate(out, args.half, args.seed)
        print(markdown(f"{out.name} on {args.half}", step_table(rows, len(real(args.half)[0]))))


def cmd_evaluate(args: argparse.Namespace) -> None:
    for run_dir in map(Path, args.runs):
        rows = evaluate(run_dir, args.half)
        print(f"\n{run_dir.name}: {pass_rate(run_dir)}")
        print(markdown(f"{run_dir.name} on {args.half}", step_table(rows, len(real(args.half)[0]))))


def cmd_pool(args: argparse.Namespace) -> None:
    """Mean per-step difference against all generated over several builds (e.g. seeds)."""
    runs = [evaluate(Path(r), args.half, replicates=True) for r in args.runs]
    print(f"{len(runs)} runs on {args.half}: mean accuracy, mean Δ against all generated [95 %]")
    print("| after step | MiniLM | MiniLM Δ | TF-IDF | TF-IDF Δ |\n|---|---|---|---|---|")
    for row in pooled(runs):
        cells = []
        for name in ("minilm_logreg", "tfidf_logreg"):
            e = row.get(name, {})
            delta = f"{e['delta']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]" if "delta" in e else "baseline"
            cells += [f"{e['accuracy']:.3f}" if e else "", delta]
        print(f"| {row['step']} | {' | '.join(cells)} |")
    print(same_size_line(runs))


def cmd_arms(args: argparse.Namespace) -> None:
    """Kept rows of two configurations, paired by seed: Δ = B − A on the same test draws, pooled."""
    if len(args.a) != len(args.b):
        raise SystemExit("arms: --a and --b need the same number of runs (one per seed, in order)")
    runs = []
    for a, b in zip(args.a, args.b):
        kept_a, kept_b = steps(Path(a))[-1][1], steps(Path(b))[-1][1]
        runs.append(accuracy([("A kept", kept_a), ("B kept", kept_b)], args.half, replicates=True))
    print(f"{len(runs)} seed pairs on {args.half}: B kept against A kept [95 %]")
    print_pooled(runs)


def print_pooled(runs: list[list[dict]]) -> None:
    """One line per step: each classifier's mean accuracy and its pooled Δ [95 %]."""
    for row in pooled(runs):
        cells = [
            f"{name}: {e['accuracy']:.3f}"
            + (f" {e['delta']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}]" if "delta" in e else "")
            for name, e in row.items()
            if isinstance(e, dict)
        ]
        print(f"{row['step']}: " + "; ".join(cells))


def same_size_line(runs: list[list[dict]]) -> str:
    """Kept against the same number of generated texts (no quality stage), paired, pooled."""
    out = []
    for name, short in (("minilm_logreg", "MiniLM"), ("tfidf_logreg", "TF-IDF")):
        diffs = []
        for run in runs:
            by_step = {s["step"]: s.get(name, {}) for s in run}
            kept, same = by_step[run[-1]["step"]], by_step[SAME_SIZE]
            diffs.append((kept["delta"] - same["delta"], kept["delta_replicates"] - same["delta_replicates"]))
        low, high = np.percentile(np.mean([d[1] for d in diffs], axis=0), [2.5, 97.5])
        out.append(f"{short} {np.mean([d[0] for d in diffs]):+.3f} [{low:+.3f}, {high:+.3f}]")
    return f"kept vs {SAME_SIZE} (a same-size build without the quality stage): " + ", ".join(out)


def cmd_labelcheck(args: argparse.Namespace) -> None:
    """Flip 10 % of the real labels (seeded), run the label check, score what it flags."""
    from textsynth.backends.transformers import TransformersBackend
    from textsynth.embed import TextEmbedder
    from textsynth.quality.labelcheck import LabelCheck

    pipeline = load_pipeline(ROOT / "pipelines" / "restaurant_reviews.yaml")
    texts, labels = real(args.half)
    rng = random.Random(args.seed)
    flipped = set(rng.sample(range(len(texts)), len(texts) // 10))
    backend = TransformersBackend(pipeline.model)
    embedder = TextEmbedder()
    variants = {
        "zero-shot only": {"classifier_weight": 0, "description_weight": 0},
        "descriptions only": {"zero_shot_weight": 0, "classifier_weight": 0},
        "classifier only": {"zero_shot_weight": 0, "description_weight": 0},
        "descriptions + classifier": {"zero_shot_weight": 0},
        "all three (default weights)": {},
    }
    print(f"{len(texts)} real sentences from {args.half}, {len(flipped)} labels flipped")
    print("| signals | flagged | precision | recall | rejected | relabelled (correctly) |")
    print("|---|---|---|---|---|---|")
    for name, update in variants.items():
        config = pipeline.quality.label_check.model_copy(update=update)
        records = [
            Record(
                id=str(i),
                label=("positive" if lab == "negative" else "negative") if i in flipped else lab,
                attributes={},
                text=t,
            )
            for i, (t, lab) in enumerate(zip(texts, labels))
        ]
        LabelCheck(pipeline, config, backend, embedder, args.seed).run(records)
        truth = np.array([i in flipped for i in range(len(records))])
        relabelled = np.array(["relabelled_from" in r.fields for r in records])
        rejected = np.array([r.status == "rejected" for r in records])
        flagged = relabelled | rejected
        correct = sum(1 for i, r in enumerate(records) if relabelled[i] and r.label == labels[i])
        precision = (flagged & truth).sum() / max(flagged.sum(), 1)
        recall = (flagged & truth).sum() / truth.sum()
        print(
            f"| {name} | {flagged.sum()} | {precision:.2f} | {recall:.2f} | {rejected.sum()} | "
            f"{relabelled.sum()} ({correct}) |"
        )


def as_filtered(run_dir: Path) -> list[Record]:
    """A run's records as they left the filters: label check, dedup and selection undone."""
    funnel = json.loads((run_dir / "funnel.json").read_text())
    early = {r for step in ("parsed", "passed_filters") for r in funnel["rejected_by_step"].get(step, {})}
    out = []
    for line in (run_dir / "records.jsonl").read_text().splitlines():
        r = Record.from_json(line)
        if r.reasons and r.reasons[0].split(":")[0] in early:
            continue
        r.label = r.fields.pop("relabelled_from", r.label)
        for key in ("label_suggested", "dup_via"):
            r.fields.pop(key, None)
        r.status, r.reasons, r.cluster = "kept", [], None
        r.scores = {k: v for k, v in r.scores.items() if not k.startswith("label_") and k != "quality"}
        out.append(r)
    return out


def cmd_variants(args: argparse.Namespace) -> None:
    """Each build's filtered records through the label check (zero-shot signal left out: it needs
    the model), dedup and the quota selection (seeded, as the build does, unless the variant
    orders it), once per variant."""
    from textsynth.commands import open_run, recorded_pipeline
    from textsynth.embed import TextEmbedder
    from textsynth.quality.chain import Order, seeded, select_quota
    from textsynth.quality.dedup import Dedup
    from textsynth.quality.labelcheck import LabelCheck

    embedder, runs = TextEmbedder(), []
    for run_dir in map(Path, args.runs):
        pipeline = recorded_pipeline(*open_run(run_dir, "rerun"))
        by_seed = seeded(pipeline.seed)
        variants: dict[str, tuple[dict, Order]] = {
            "as built": ({}, by_seed),
            "no description signal": ({"description_weight": 0.0}, by_seed),
            "no classifier": ({"classifier": False}, by_seed),
            "no relabelling": ({"relabel": False}, by_seed),
            "no label check": ({"enabled": False}, by_seed),
            # which extras the quota drops: seeded (as built), or the label check's surest first
            "quota keeps the least sure": ({}, lambda r: (r.scores.get("label_confidence", 1.0), r.id)),
        }
        quotas = json.loads((run_dir / "summary.json").read_text())["planned_labels"]
        stages = steps(run_dir)[:1]  # all generated
        for name, (update, order) in variants.items():
            records = as_filtered(run_dir)
            config = pipeline.quality.label_check.model_copy(update=update | {"zero_shot": False})
            if config.enabled:
                LabelCheck(pipeline, config, None, embedder, pipeline.seed).run(records)
            Dedup(pipeline.quality.dedup, embedder).run(records)
            select_quota(records, quotas, order)
            kept = [r for r in records if r.status == "kept"]
            stages.append((name, polar([r.text or "" for r in kept], [r.label for r in kept])))
        runs.append(accuracy(stages, args.half, replicates=True))
    print(f"{len(runs)} builds on {args.half}: kept rows per label-check variant, Δ vs all generated [95 %]")
    print_pooled(runs)


def cmd_filters(args: argparse.Namespace) -> None:
    from textsynth.quality.filters import build_filters

    texts = real("yelp_labelled.tsv")[0]
    records = [Record(id=str(i), label="x", attributes={}, text=t) for i, t in enumerate(texts)]
    for stage in build_filters(FilterConfig(), {}):
        stage.run(records)
    rejected = [r for r in records if r.status == "rejected"]
    print(f"default filters reject {len(rejected)} of {len(records)} real sentences")
    for r in rejected:
        print(f"- {r.reasons[0]}: {r.text}")


def cmd_headroom(args: argparse.Namespace) -> None:
    """An oracle bounds what any label-based stage can gain: a classifier trained on the judge half's
    real labels drops every generated text it disagrees with; accuracy is read on the other half."""
    from sklearn.linear_model import LogisticRegression

    def fit_score(x: np.ndarray, y: np.ndarray) -> float:
        return float((LogisticRegression(max_iter=1000).fit(x, y).predict(x_test) == y_test).mean())

    def vectors(split: tuple[list[str], list[str]]) -> tuple[np.ndarray, np.ndarray]:
        return embed(split[0]), np.array(split[1]) == "positive"

    judge = LogisticRegression(max_iter=1000).fit(*vectors(real(args.judge)))
    x_test, y_test = vectors(real(args.test))
    curve: dict[int, list[float]] = {size: [] for size in args.sizes}
    print(f"judge trained on {args.judge}, accuracy on {args.test} (MiniLM + logistic regression)")
    print("| run | generated | judge disagrees | accuracy | oracle-cleaned Δ | kept | disagrees | kept Δ |")
    print("|---|---|---|---|---|---|---|---|")
    for run_dir in map(Path, args.runs):
        stages = dict(steps(run_dir))
        x_gen, y_gen = vectors(stages["generated"])
        x_kept, y_kept = vectors(stages["exported"])
        agree = judge.predict(x_gen) == y_gen
        base = fit_score(x_gen, y_gen)
        print(
            f"| {run_dir.name} | {len(y_gen)} | {1 - agree.mean():.3f} | {base:.3f} | "
            f"{fit_score(x_gen[agree], y_gen[agree]) - base:+.3f} | {len(y_kept)} | "
            f"{(judge.predict(x_kept) != y_kept).mean():.3f} | {fit_score(x_kept, y_kept) - base:+.3f} |"
        )
        for size in args.sizes:
            for rep in range(args.draws):
                rows = random.Random(rep).sample(range(len(y_gen)), min(size, len(y_gen)))
                curve[size].append(fit_score(x_gen[rows], y_gen[rows]))
    print(f"\nrandom subsets of all generated rows, {args.draws} per run:")
    print("| rows | accuracy | SE |\n|---|---|---|")
    for size, accs in curve.items():
        print(f"| {size} | {np.mean(accs):.4f} | {np.std(accs) / np.sqrt(len(accs)):.4f} |")


def loss_rate(records: list[Record], label: str) -> float:
    """The share of the records planned for `label` that `probe_loss` counts as lost, as the probe does."""
    from textsynth.quotas import PROBE_LABEL_CHECK_WEIGHT, probe_loss

    mine = [r for r in records if r.fields.get("relabelled_from", r.label) == label]
    return sum(probe_loss(r, label, PROBE_LABEL_CHECK_WEIGHT) for r in mine) / max(len(mine), 1)


def cmd_ahead(args: argparse.Namespace) -> None:
    """Under another weight each label keeps that many of the extras the build made, in the order it
    made them (`plan_ahead` asks a prefix of the same leaves). Survivors are read from the final
    statuses; an extra the build never made survives at 0.85."""
    from textsynth.commands import open_run, recorded_pipeline
    from textsynth.embed import TextEmbedder
    from textsynth.pipeline import prepare
    from textsynth.quality.dedup import Dedup
    from textsynth.quality.labelcheck import LabelCheck
    from textsynth.quotas import plan_ahead, probe_loss_rates, probe_of

    embedder = TextEmbedder()
    totals = {w: [0, 0] for w in args.weights}  # extras asked, builds with a label short
    print(
        "| run | loss rate probe/build | asked ahead | "
        + " | ".join(f"w = {w}: asked, short" for w in args.weights)
        + " |"
    )
    print("|---|---|---|" + "---|" * len(args.weights))
    for run_dir in map(Path, args.runs):
        pipeline = recorded_pipeline(*open_run(run_dir, "replay"))
        planned = prepare(pipeline, pipeline_path=ROOT / "pipelines" / f"{pipeline.name}.yaml").planned
        records = [Record.from_json(x) for x in (run_dir / "records.jsonl").read_text().splitlines()]
        filtered = {r.id: r for r in as_filtered(run_dir)}
        final = {r.id: r for r in records}
        forced = pipeline.updated("quality.plan_ahead", True)  # the probe at any size
        probe = [filtered.get(ex.id, final[ex.id]) for ex in probe_of(planned, forced)]
        LabelCheck(pipeline, pipeline.quality.label_check, None, embedder, pipeline.seed).run(probe)
        Dedup(pipeline.quality.dedup, embedder).run(probe)
        summary = json.loads((run_dir / "summary.json").read_text())
        quotas, built = summary["planned_labels"], summary["planned_ahead"]
        made = records[len(planned) : len(planned) + built]
        extras = {
            label: [r for r in made if r.fields.get("relabelled_from", r.label) == label] for label in quotas
        }
        cells = []
        for weight in args.weights:
            asked = {
                label: len(leaves)
                for label, leaves in plan_ahead(
                    probe, quotas, probe_loss_rates(probe, quotas, weight)
                ).items()
            }
            mine = records[: len(planned)] + [
                r for label, rs in extras.items() for r in rs[: asked.get(label, 0)]
            ]
            short = {}
            for label, want in quotas.items():
                alive = sum(
                    r.label == label and (r.status == "kept" or r.reasons == ["over_quota"]) for r in mine
                )
                never_made = max(0, asked.get(label, 0) - len(extras[label]))
                if (missing := want - alive - round(0.85 * never_made)) > 0:
                    short[label] = missing
            totals[weight][0] += sum(asked.values())
            totals[weight][1] += bool(short)
            cells.append(f"{sum(asked.values())} {short or ''}".strip())
        lost = [r for r in records if r.reasons != ["over_quota"]]
        rates = " ".join(
            f"{label[:3]} {loss_rate(probe, label):.2f}/{loss_rate(lost, label):.2f}" for label in quotas
        )
        print(f"| {run_dir.parent.name}/{run_dir.name} | {rates} | {built} | " + " | ".join(cells) + " |")
    print("| all builds | | | " + " | ".join(f"{a} asked, {s} short" for a, s in totals.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    half = {"default": "tune.tsv", "help": "tune.tsv (tuning) or confirm.tsv (confirming a decision)"}
    b = sub.add_parser("build")
    b.add_argument("--pipeline", default="sentiment")
    b.add_argument("--n", type=int, default=300)
    b.add_argument("--seed", type=int, default=11)
    b.add_argument("--gamma", type=float, nargs="+", default=[1.0])
    b.add_argument("--guidance-tokens", type=int, default=None)
    b.add_argument("--guidance-labels", type=int, default=None, help="other labels contrasted (default all)")
    b.add_argument(
        "--loop-rounds", type=int, default=None, help="seed_examples.loop.rounds (default: the pipeline's)"
    )
    b.add_argument("--length-push", type=float, default=None, help="default: the pipeline's")
    b.add_argument("--out", default="runs/dev")
    b.add_argument("--half", **half)
    e = sub.add_parser("evaluate")
    e.add_argument("runs", nargs="+")
    e.add_argument("--half", **half)
    po = sub.add_parser("pool")
    po.add_argument("runs", nargs="+")
    po.add_argument("--half", **half)
    ar = sub.add_parser("arms")
    ar.add_argument("--a", nargs="+", required=True, help="runs of configuration A, one per seed")
    ar.add_argument("--b", nargs="+", required=True, help="runs of configuration B, the same seeds in order")
    ar.add_argument("--half", **half)
    lc = sub.add_parser("labelcheck")
    lc.add_argument("--half", **half)
    lc.add_argument("--seed", type=int, default=0)
    va = sub.add_parser("variants")
    va.add_argument("runs", nargs="+")
    va.add_argument("--half", **half)
    sub.add_parser("filters")
    hr = sub.add_parser("headroom")
    hr.add_argument("runs", nargs="+")
    hr.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 150, 200, 240])
    hr.add_argument("--draws", type=int, default=8)
    hr.add_argument("--judge", default="tune.tsv", help="the real half the oracle is trained on")
    hr.add_argument("--test", default="confirm.tsv", help="the real half accuracy is read on")
    ah = sub.add_parser("ahead")
    ah.add_argument("runs", nargs="+")
    ah.add_argument("--weights", type=float, nargs="+", default=[0.8, 0.7, 0.6, 0.5, 0.4])
    args = parser.parse_args()
    commands = {"build": cmd_build, "evaluate": cmd_evaluate, "pool": cmd_pool, "arms": cmd_arms}
    commands |= {"labelcheck": cmd_labelcheck, "filters": cmd_filters, "variants": cmd_variants}
    commands |= {"headroom": cmd_headroom, "ahead": cmd_ahead}
    commands[args.command](args)


if __name__ == "__main__":
    main()
