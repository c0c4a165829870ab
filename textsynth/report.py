"""`textsynth report RUN_DIR`: one self-contained HTML page to look at a build.

Plots are matplotlib PNGs embedded as data URIs and the page has no script or external link, so
it opens offline and can be mailed as one file. It reads only what the build stored: records,
funnel, diversity metrics, embeddings and the exported splits.
"""

from __future__ import annotations

import base64
import html
import io
import json
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from textsynth.compare import compare_tables, load_compare
from textsynth.errors import RunDirError
from textsynth.quality.dedup import flagged_pairs
from textsynth.quality.filters import words
from textsynth.records import Record
from textsynth.run import RunDir, write_atomic

STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}table{border-collapse:"
    "collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top;"
    "font-size:13px}h2{margin-top:1.6em;border-bottom:1px solid #ddd}img{max-width:100%}"
)


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _funnel(funnel: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt

    steps = funnel.get("steps", [])
    if not steps:
        return "<p>No funnel stored.</p>"
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(steps) + 0.8))
    ax.barh(steps[::-1], [funnel["total"][s] for s in steps[::-1]], color="#4c78a8")
    ax.set_xlabel("records still kept after the step")
    reasons = funnel.get("rejected_by_step", {})
    rows = [
        [s, funnel["total"][s], ", ".join(f"{k} {v}" for k, v in sorted(reasons.get(s, {}).items()) if v)]
        for s in steps
    ]
    return _png(fig) + _table(["step", "kept", "rejected at this step"], rows)


def _splits(run: RunDir) -> str:
    path = run.path / "data.jsonl"
    if not path.exists():
        return "<p>Not exported yet.</p>"
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        counts[row.get("label", "all")][row["split"]] += 1
    splits = sorted({s for c in counts.values() for s in c})
    return _table(
        ["label", *splits], [[label, *(c[s] for s in splits)] for label, c in sorted(counts.items())]
    )


def _lengths(kept: list[Record]) -> str:
    import matplotlib.pyplot as plt

    by_label: dict[str, list[int]] = defaultdict(list)
    for r in kept:
        by_label[r.label].append(len(words(r.text or "")))
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.hist(list(by_label.values()), bins=20, label=list(by_label), stacked=False)
    ax.set_xlabel("words per text")
    ax.set_ylabel("texts")
    ax.legend()
    return _png(fig)


def _real_validation(rounds: list[dict[str, Any]]) -> str:
    """The real-validation curve per round (validation.py) and its numbers."""
    import matplotlib.pyplot as plt

    arms = {
        "seeds alone": "seeds",
        "seeds + synthetic": "seeds_plus_synthetic",
        "synthetic alone": "synthetic",
    }
    fig, ax = plt.subplots(figsize=(7, 3))
    x = [r["requests"] for r in rounds]
    for name, key in arms.items():
        ax.plot(x, [r[key] for r in rounds], marker="o", label=name)
    ax.set_xlabel("requests generated (one point per round)")
    ax.set_ylabel("accuracy on held-out seeds")
    ax.legend()
    rows = [[r["round"], r.get("kind", ""), r["requests"], *(r[k] for k in arms.values())] for r in rounds]
    return _png(fig) + _table(["round", "kind", "requests", *arms], rows)


def _diversity(diversity: dict[str, Any]) -> str:
    keys = ["count", "mean_words", "distinct_2", "compression_ratio", "mean_cosine_distance", "vendi"]
    out = _table(["scope", *keys], [["dataset", *(diversity.get("dataset", {}).get(k, "") for k in keys)]])
    labels = diversity.get("labels", {})
    out += _table(["label", *keys], [[name, *(m.get(k, "") for k in keys)] for name, m in labels.items()])
    leaves = sorted(diversity.get("leaves", {}).items(), key=lambda kv: -kv[1].get("count", 0))[:30]
    out += "<p>Largest taxonomy leaves (up to 30):</p>"
    return out + _table(["leaf", *keys], [[leaf, *(m.get(k, "") for k in keys)] for leaf, m in leaves])


def _coverage(kept: list[Record]) -> str:
    """Heat-map per attribute: kept examples per label and value."""
    import matplotlib.pyplot as plt

    labels = sorted({r.label for r in kept})
    attributes = sorted({a for r in kept for a in r.attributes})
    if not attributes or not labels:
        return "<p>No taxonomy attributes.</p>"
    fig, axes = plt.subplots(1, len(attributes), figsize=(3.2 * len(attributes) + 1, 0.5 * len(labels) + 2.5))
    for ax, attr in zip(np.atleast_1d(axes), attributes):
        values = sorted({r.attributes[attr] for r in kept if attr in r.attributes})
        grid = np.zeros((len(labels), len(values)))
        for r in kept:
            if attr in r.attributes:
                grid[labels.index(r.label), values.index(r.attributes[attr])] += 1
        ax.imshow(grid, cmap="Blues", aspect="auto")
        ax.set_title(attr, fontsize=9)
        ax.set_xticks(range(len(values)), values, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        for (i, j), v in np.ndenumerate(grid):
            ax.text(
                j,
                i,
                int(v),
                ha="center",
                va="center",
                fontsize=7,
                color="black" if v < grid.max() / 2 else "white",
            )
    return _png(fig)


def _embedding_map(run: RunDir, kept: list[Record]) -> str:
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    try:
        vectors = run.read_embeddings()
    except RunDirError:  # an older run without stored embeddings
        return "<p>No stored embeddings.</p>"
    rows = [r for r in kept if r.id in vectors]
    if len(rows) < 3:
        return "<p>Too few embedded records for a map.</p>"
    points = PCA(n_components=2, random_state=0).fit_transform(np.stack([vectors[r.id] for r in rows]))
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label in sorted({r.label for r in rows}):
        mask = np.array([r.label == label for r in rows])
        ax.scatter(points[mask, 0], points[mask, 1], s=14, label=label, alpha=0.75)
    ax.set_title("kept texts, MiniLM embeddings, PCA to 2-D")
    ax.legend(fontsize=8)
    return _png(fig)


def _duplicates(records: list[Record]) -> str:
    pairs = sorted(flagged_pairs(records), key=lambda p: -p[3])[:10]
    if not pairs:
        return "<p>No duplicates were flagged.</p>"
    rows = [[f"{sim:.3f}", method, dup.text or "", rep.text or ""] for dup, rep, method, sim in pairs]
    return _table(["similarity", "method", "rejected duplicate", "kept representative"], rows)


def _samples(records: list[Record], seed: int) -> str:
    rng = random.Random(seed)
    kept = [r for r in records if r.status == "kept"]
    rejected = [r for r in records if r.status == "rejected" and r.text]
    pick_k = rng.sample(kept, min(10, len(kept)))
    pick_r = rng.sample(rejected, min(10, len(rejected)))
    out = "<h3>Kept</h3>" + _table(["label", "text"], [[r.label, r.text] for r in pick_k])
    return (
        out
        + "<h3>Rejected</h3>"
        + _table(["label", "reasons", "text"], [[r.label, ", ".join(r.reasons), r.text] for r in pick_r])
    )


def _judge(kept: list[Record]) -> str | None:
    """Mean judge score per criterion and label, when the pipeline has a judge step."""
    criteria = sorted({k for r in kept for k in r.scores if k.startswith("judge_")})
    if not criteria:
        return None
    labels = sorted({r.label for r in kept})
    rows = []
    for label in labels:
        mine = [r for r in kept if r.label == label]
        rows.append(
            [label, len(mine), *(float(np.mean([r.scores.get(c, np.nan) for r in mine])) for c in criteria)]
        )
    return _table(["label", "kept", *criteria], rows)


def write_report(run: RunDir, manifest: dict[str, Any]) -> Path:
    """Render RUN_DIR/report.html and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    records = run.read_records()
    kept = [r for r in records if r.status == "kept"]
    funnel = json.loads((run.path / "funnel.json").read_text()) if (run.path / "funnel.json").exists() else {}
    diversity = (
        json.loads((run.path / "diversity.json").read_text())
        if (run.path / "diversity.json").exists()
        else {}
    )
    model = manifest.get("model", {})
    sections = [
        ("Funnel", _funnel(funnel)),
        ("Label balance per split", _splits(run)),
        ("Length per label", _lengths(kept) if kept else "<p>No kept records.</p>"),
        ("Diversity", _diversity(diversity)),
        ("Taxonomy coverage", _coverage(kept)),
        ("Embedding map", _embedding_map(run, kept)),
        ("Nearest duplicates", _duplicates(records)),
        ("Samples", _samples(records, int(manifest.get("seed", 0)))),
    ]
    summary = (
        json.loads((run.path / "summary.json").read_text()) if (run.path / "summary.json").exists() else {}
    )
    if summary.get("real_validation"):
        sections.insert(
            1, ("Real validation (held-out seed examples)", _real_validation(summary["real_validation"]))
        )
    judged = _judge(kept)
    if judged is not None:
        sections.insert(4, ("Judge scores", judged))
    compared = load_compare(run.path)
    if compared is not None:
        tables = "".join(
            f"<p>{html.escape(t)}</p>" + _table(h, rows) for t, h, rows in compare_tables(compared)
        )
        sections.append(("Comparison with real data", tables))
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    title = html.escape(str(manifest.get("name", run.path.name)))
    head = (
        f"<p>{len(records)} records, {len(kept)} kept · model {html.escape(str(model.get('id')))} "
        f"({html.escape(str(model.get('dtype')))}) · seed {manifest.get('seed')}</p>"
    )
    page = (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title><style>{STYLE}</style></head>"
    )
    page += f"<body><h1>textsynth report: {title}</h1>{head}{body}</body></html>\n"
    path = run.path / "report.html"
    write_atomic(path, page)
    return path
