"""Single process vs an OpenAI-compatible server vs Ray, on the same pipeline, in one process run.

Builds `pipelines/sentiment.yaml` (n examples, one pass, no top-up) three ways and prints the
generation examples/s of each and the ratio to the single-process build: `backend: transformers`
in this process (the baseline), `backend: openai` against `transformers serve` on 127.0.0.1
serving the same weights, and `--executor ray` with a local 2-actor pool. On one 2-core machine
the last two can only add overhead; they exist to reach GPUs and other machines.

    python benchmarks/bench_scaleout.py [--n 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.servers import ServeProcess  # noqa: E402
from textsynth.config import ModelConfig  # noqa: E402
from textsynth.hardware import cpu_class  # noqa: E402
from textsynth.models import identify  # noqa: E402
from textsynth.pipeline import run_build  # noqa: E402
from textsynth.pipeline_file import load_pipeline  # noqa: E402

SENTIMENT = ROOT / "pipelines" / "sentiment.yaml"


def pipeline_file(folder: Path, n: int, **model: object) -> Path:
    data = load_pipeline(SENTIMENT).model_dump(mode="json")
    data["n"] = n
    data["model"].update(model)
    data["quality"]["top_up_rounds"] = 0
    # what every arm can run: a chat server decodes no guidance rows and does not continue an opening
    data["generation"]["guidance_scale"] = 1
    data["templates"]["assistant"] = None
    path = folder / f"sentiment_{len(list(folder.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main() -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "prompts").symlink_to(ROOT / "prompts")
        pipes = folder / "pipelines"
        pipes.mkdir()
        local = run_build(pipeline_file(pipes, args.n), out=folder / "local", quiet=True)
        rows.append(("single process (transformers)", local.summary))
        server = ServeProcess(identify(ModelConfig()).source).start()
        try:
            path = pipeline_file(
                pipes,
                args.n,
                backend="openai",
                base_url=server.base_url,
                name=server.model_dir,
                concurrency=8,
            )
            rows.append(
                (
                    "openai backend, transformers serve",
                    run_build(path, out=folder / "srv", quiet=True).summary,
                )
            )
        finally:
            server.stop()
        ray_run = run_build(pipeline_file(pipes, args.n), out=folder / "ray", quiet=True, executor="ray")
        rows.append(("--executor ray, 2 actors x 1 CPU", ray_run.summary))
    base = rows[0][1].examples_per_s
    print(f"{'how':<38}{'generated':>10}{'gen s':>8}{'ex/s':>8}{'vs single':>10}{'kept':>6}")
    for name, s in rows:
        print(
            f"{name:<38}{s.generated:>10}{s.gen.seconds:>8.1f}{s.examples_per_s:>8.2f}"
            f"{s.examples_per_s / base:>9.2f}x{s.kept:>6}"
        )


if __name__ == "__main__":
    main()
