"""Generation throughput of textsynth against the obvious alternatives, in one process.

textsynth ships its own decode loop (TransformersBackend) on the claim that it beats calling
transformers directly. This script checks that claim on the embedded default model
(SmolLM2-135M-Instruct, Q4_1 GGUF dequantized by textsynth) with the same prompts and sampling
parameters for every method:

1. baseline_pipeline      transformers `pipeline("text-generation")`, fp32, one prompt at a time
                          (on a subset; rates are per-example, so they carry over to N)
2. plain_generate    `model.generate` on the model as transformers loads it (its linear
                          layers unpacked), left-padded batches
3. llama_cpp              llama-cpp-python on the GGUF itself, if it is installed
4. textsynth_backend_unpacked  TransformersBackend.generate on that same unpacked model
5. textsynth_backend      TransformersBackend.generate, linear weights packed once at load
                          (textsynth/packing.py), as every textsynth build runs on a CPU
6. textsynth_end_to_end   textsynth.pipeline.run_build on pipelines/sentiment.yaml (plan, render,
                          generate, parse, store, export), model already loaded

Every method runs in the dtype `--dtype` names, by default the one `dtype: auto` resolves to on
this machine (bf16 where the CPU has native bf16 kernels, fp32 on an AVX2-only CPU), so the
numbers are those of the builds a user runs here; the CPU class heads the output.

Generated tokens are counted per row up to and including its EOS, never padding or steps taken
after the row ended. Models are loaded and warmed up before any timing.

    python benchmarks/bench_generate.py --n 64 [--batch 128] [--baseline-subset 6] [--json out.json]
        [--skip llama_cpp textsynth_end_to_end]
    python benchmarks/bench_generate.py --scaling [--scaling-n 64 256] [--scaling-batch 64]
    python benchmarks/bench_generate.py --default-build [--baseline-subset 6] [--build-n 256] [--dtype D]
    python benchmarks/bench_generate.py --llama-server PATH [--n 64] [--slots 16]
    python benchmarks/bench_generate.py --paired 4 [--n 256] [--batch 128]

--default-build times what a user of the README waits for: `pipelines/sentiment.yaml` as shipped
(n = 60, its top-up rounds, the quality stage, export, the model load included), in kept
examples per second against the one-at-a-time pipeline baseline in the same process;
`--build-n` builds that many examples instead (the issue's `build --n 256` row).

--llama-server starts llama.cpp's server (the binary at PATH) on the embedded GGUF with
`--slots` parallel slots and continuous batching, sends the same prompts with the same sampling
parameters from as many client threads, and runs the textsynth backend beside it.

--paired R runs plain `generate` and the textsynth backend in turn, R rounds each, the
order swapped every round (ABBA), and prints every round's ratio and the median's: on a shared
machine one run of each can drift by ±10 % between them, and a steady drift would favour
whichever always ran first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import transformers

from textsynth.backends.base import Request
from textsynth.backends.transformers import TransformersBackend
from textsynth.config import GenerationParams, ModelConfig
from textsynth.hardware import cpu_class
from textsynth.models import LoadedModel, default_gguf, identify, load_model, resolve_dtype
from textsynth.pipeline import run_build
from textsynth.pipeline_file import load_pipeline

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "sentiment.yaml"
LABELS = ("positive", "negative", "neutral")
PRODUCTS = (
    "blender",
    "pair of wireless headphones",
    "laptop",
    "pair of running shoes",
    "coffee maker",
    "backpack",
    "smartphone",
    "electric toothbrush",
    "office chair",
    "board game",
    "vacuum cleaner",
    "desk lamp",
    "water bottle",
    "mechanical keyboard",
    "air fryer",
    "winter jacket",
    "smartwatch",
    "camping tent",
    "bluetooth speaker",
    "kitchen knife set",
)
DTYPE = "auto"  # set from --dtype in main
PARAMS = GenerationParams(max_new_tokens=96, temperature=0.8, top_p=0.95, top_k=50)
SEED = 0
SCALING_N = (64, 256, 1024)
SCALING_BATCH = (32, 64, 128)

Messages = list[dict[str, str]]


@dataclass
class Row:
    """One measured method: what it produced and how long it took."""

    name: str
    examples: int
    tokens: int
    wall_s: float
    note: str = ""

    @property
    def examples_per_s(self) -> float:
        return self.examples / self.wall_s if self.wall_s else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "examples_per_s": self.examples_per_s, "tokens_per_s": self.tokens_per_s}


# ---------------------------------------------------------------- prompts and token counting


def make_prompts(n: int) -> list[Messages]:
    """N chat prompts cycling over label × product (3 and 20 are coprime: 60 distinct prompts)."""
    return [
        [
            {
                "role": "user",
                "content": f"Write one short {LABELS[i % len(LABELS)]} customer review about a "
                f"{PRODUCTS[i % len(PRODUCTS)]}. Output only the review.",
            }
        ]
        for i in range(n)
    ]


def make_requests(prompts: Sequence[Messages]) -> list[Request]:
    return [Request(f"r{i}", messages, SEED + i) for i, messages in enumerate(prompts)]


def tokens_through_eos(new_ids: torch.Tensor, eos: torch.Tensor) -> list[int]:
    """Per row of generated ids (rows, steps): tokens up to and including the first EOS.

    A row without EOS ran to the last step (generation only stops early once every row ended),
    so it counts every column.
    """
    hit = torch.isin(new_ids, eos)
    first = hit.int().argmax(dim=-1) + 1
    return torch.where(hit.any(dim=-1), first, new_ids.shape[-1]).tolist()


def left_pad(encoded: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of a left-padded batch."""
    width = max(len(ids) for ids in encoded)
    input_ids = torch.tensor([[pad_id] * (width - len(ids)) + ids for ids in encoded])
    attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded])
    return input_ids, attention


def sampling_kwargs(params: GenerationParams) -> dict[str, Any]:
    return {
        "max_new_tokens": params.max_new_tokens,
        "do_sample": True,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k,
    }


# ---------------------------------------------------------------- the methods


def run_baseline_pipeline(
    pipe: Any, backend: TransformersBackend, prompts: Sequence[Messages], params: GenerationParams
) -> tuple[int, float]:
    """One `pipeline(...)` call per prompt; (generated tokens, wall seconds)."""
    prompt_ids = [backend.encode(messages) for messages in prompts]
    eos = backend.eos
    tokens = 0
    start = time.perf_counter()
    for messages, prompt in zip(prompts, prompt_ids, strict=True):
        out = pipe(messages, return_tensors=True, **sampling_kwargs(params))
        sequence = list(out[0]["generated_token_ids"])
        if sequence[: len(prompt)] != prompt:
            raise RuntimeError("pipeline encoded the prompt differently from TransformersBackend.encode")
        tokens += tokens_through_eos(torch.tensor([sequence[len(prompt) :]]), eos)[0]
    return tokens, time.perf_counter() - start


def run_plain_generate(
    loaded: LoadedModel,
    backend: TransformersBackend,
    prompts: Sequence[Messages],
    params: GenerationParams,
    batch: int,
) -> tuple[int, float]:
    """`model.generate` over left-padded batches of `batch` prompts; (generated tokens, wall seconds)."""
    model, pad_id = loaded.model, loaded.tokenizer.pad_token_id
    eos = backend.eos
    tokens = 0
    start = time.perf_counter()
    for first in range(0, len(prompts), batch):
        encoded = [backend.encode(messages) for messages in prompts[first : first + batch]]
        input_ids, attention = left_pad(encoded, pad_id)
        with torch.inference_mode():
            out = model.generate(
                input_ids=input_ids.to(model.device),
                attention_mask=attention.to(model.device),
                pad_token_id=pad_id,
                **sampling_kwargs(params),
            )
        tokens += sum(tokens_through_eos(out[:, input_ids.shape[1] :].cpu(), eos))
    return tokens, time.perf_counter() - start


def load_llama() -> Any | None:
    """A llama_cpp.Llama on the default GGUF, or None when llama-cpp-python is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None
    return llama_cpp.Llama(model_path=str(default_gguf()), n_threads=2, n_ctx=1024, seed=SEED, verbose=False)


def run_llama_cpp(llm: Any, prompts: Sequence[Messages], params: GenerationParams) -> tuple[int, float]:
    """Sequential chat completions; (generated tokens, wall seconds).

    llama-cpp-python's `completion_tokens` leaves out the end-of-generation token, so a
    completion that stopped counts one more, like the other methods.
    """
    tokens = 0
    start = time.perf_counter()
    for messages in prompts:
        out = llm.create_chat_completion(
            messages=messages,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
        )
        stopped = out["choices"][0]["finish_reason"] == "stop"
        tokens += int(out["usage"]["completion_tokens"]) + int(stopped)
    return tokens, time.perf_counter() - start


def run_backend(
    backend: TransformersBackend, requests: Sequence[Request], params: GenerationParams
) -> tuple[int, int, float]:
    """TransformersBackend.generate; (completions, generated tokens, wall seconds)."""
    examples = tokens = 0
    start = time.perf_counter()
    for completion in backend.generate(requests, params):
        examples += 1
        tokens += completion.tokens
    return examples, tokens, time.perf_counter() - start


def run_end_to_end(n: int) -> tuple[Any, float]:
    """A whole build into a fresh temporary run directory; (BuildSummary, wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="textsynth-bench-") as tmp:
        start = time.perf_counter()
        pipeline = load_pipeline(PIPELINE)  # one pass: top-up rounds would generate more than n
        pipeline = pipeline.model_copy(
            update={"quality": pipeline.quality.model_copy(update={"top_up_rounds": 0})}
        )
        result = run_build(pipeline, n=n, out=Path(tmp) / "run", quiet=True, pipeline_path=PIPELINE)
        wall = time.perf_counter() - start
    return result.summary, wall


# ---------------------------------------------------------------- reporting


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def environment() -> dict[str, Any]:
    return {
        "cpu": cpu_class(),
        "dtype": DTYPE,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min_at_start": os.getloadavg()[0],
        "params": PARAMS.model_dump(),
    }


def print_table(rows: Sequence[Row]) -> None:
    header = (
        f"{'method':<24} {'examples':>8} {'gen tokens':>10} {'wall s':>8} {'examples/s':>10} {'tokens/s':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.name:<24} {row.examples:>8} {row.tokens:>10} {row.wall_s:>8.2f} "
            f"{row.examples_per_s:>10.3f} {row.tokens_per_s:>9.1f}" + (f"  {row.note}" if row.note else "")
        )


def compute_ratios(rows: dict[str, Row]) -> dict[str, float]:
    """The comparisons the benchmark exists for (only those whose rows were measured)."""
    wanted = [
        ("textsynth_backend", "baseline_pipeline", "examples/s"),
        ("textsynth_backend", "llama_cpp", "examples/s"),
        ("textsynth_backend", "plain_generate", "tokens/s"),
        ("textsynth_backend", "textsynth_backend_unpacked", "tokens/s"),
        ("textsynth_end_to_end", "baseline_pipeline", "examples/s"),
    ]
    ratios: dict[str, float] = {}
    for top, bottom, unit in wanted:
        if top in rows and bottom in rows:
            attr = "examples_per_s" if unit == "examples/s" else "tokens_per_s"
            denominator = getattr(rows[bottom], attr)
            if denominator:
                ratios[f"{top} vs {bottom} ({unit})"] = getattr(rows[top], attr) / denominator
    return ratios


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# ---------------------------------------------------------------- drivers


def load(dtype: str) -> LoadedModel:
    log(f"loading the default model in {dtype}")
    return load_model(ModelConfig(dtype=dtype))


def load_unpacked(loaded: LoadedModel) -> LoadedModel:
    """The same weights as transformers loads them, without textsynth's packed linears."""
    source = identify(ModelConfig(dtype=DTYPE)).source
    model = transformers.AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, DTYPE)).eval()
    return replace(loaded, model=model)


def compare(
    n: int, batch: int, subset: int, skip: Sequence[str] = ()
) -> tuple[list[Row], dict[str, float], list[str]]:
    """All six methods in order, less those in `skip`; (rows, ratios, notes about skipped methods)."""
    fp32, loaded = load("float32"), load(DTYPE)
    unpacked = load_unpacked(loaded)
    backend = TransformersBackend(ModelConfig(dtype=DTYPE, batch_size=batch), loaded)
    prompts = make_prompts(n)
    warm = GenerationParams(**{**PARAMS.model_dump(), "max_new_tokens": 4})
    rows: list[Row] = []
    notes: list[str] = []

    pipe = transformers.pipeline("text-generation", model=fp32.model, tokenizer=fp32.tokenizer)
    run_baseline_pipeline(pipe, backend, prompts[:1], warm)
    subset = min(subset, n)
    log(f"baseline_pipeline: {subset} prompts, one at a time, fp32")
    torch.manual_seed(SEED)
    tokens, wall = run_baseline_pipeline(pipe, backend, prompts[:subset], PARAMS)
    scale = n / subset
    rows.append(
        Row(
            "baseline_pipeline",
            subset,
            tokens,
            wall,
            f"fp32, {subset}/{n} prompts; ~{wall * scale:.0f} s for {n}",
        )
    )
    del pipe

    run_plain_generate(unpacked, backend, prompts[:2], warm, batch)
    log(f"plain_generate: {n} prompts, batch {batch}")
    torch.manual_seed(SEED)
    tokens, wall = run_plain_generate(unpacked, backend, prompts, PARAMS, batch)
    rows.append(Row("plain_generate", n, tokens, wall, f"{DTYPE}, batch {batch}"))

    llm = None if "llama_cpp" in skip else load_llama()
    if "llama_cpp" in skip:
        notes.append("llama_cpp: skipped (--skip)")
    elif llm is None:
        notes.append("llama_cpp: skipped (`import llama_cpp` failed: llama-cpp-python is not installed)")
        log(notes[-1])
    else:
        run_llama_cpp(llm, prompts[:1], warm)
        log(f"llama_cpp: {n} prompts, sequential, n_threads=2")
        tokens, wall = run_llama_cpp(llm, prompts, PARAMS)
        rows.append(Row("llama_cpp", n, tokens, wall, "Q4_1 GGUF, n_threads=2"))
        del llm

    requests = make_requests(prompts)
    plain_backend = TransformersBackend(ModelConfig(dtype=DTYPE, batch_size=batch), unpacked)
    run_backend(plain_backend, requests[:2], warm)
    log(f"textsynth_backend_unpacked: {n} prompts, batch {batch}")
    examples, tokens, wall = run_backend(plain_backend, requests, PARAMS)
    rows.append(
        Row("textsynth_backend_unpacked", examples, tokens, wall, f"{DTYPE}, batch {batch}, unpacked")
    )
    del plain_backend, unpacked

    run_backend(backend, requests[:2], warm)
    log(f"textsynth_backend: {n} prompts, batch {batch}")
    examples, tokens, wall = run_backend(backend, requests, PARAMS)
    rows.append(Row("textsynth_backend", examples, tokens, wall, f"{DTYPE}, batch {batch}"))

    if "textsynth_end_to_end" in skip:
        notes.append("textsynth_end_to_end: skipped (--skip)")
        return rows, compute_ratios({row.name: row for row in rows}), notes
    log("textsynth_end_to_end: warm-up build (n=3)")
    run_end_to_end(3)
    log(f"textsynth_end_to_end: build of {PIPELINE.name} with n={n}")
    summary, wall = run_end_to_end(n)
    e2e_dtype = resolve_dtype("auto")
    rows.append(
        Row(
            "textsynth_end_to_end",
            n,
            summary.gen.tokens,
            wall,
            f"{e2e_dtype}, yaml's own prompts/params; generate {summary.gen.seconds:.1f} s, "
            f"kept {summary.kept}/{summary.planned}",
        )
    )
    return rows, compute_ratios({row.name: row for row in rows}), notes


def run_llama_server(binary: Path, prompts: Sequence[Messages], slots: int) -> Row:
    """All prompts through llama.cpp's server with `slots` parallel slots; one Row."""
    import socket
    import subprocess
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = slots * 512
    command = [str(binary), "-m", str(default_gguf()), "--port", str(port), "-np", str(slots)]
    command += ["-c", str(ctx), "-t", str(torch.get_num_threads()), "--no-webui"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                time.sleep(0.1)

        def ask(item: tuple[int, Messages]) -> int:
            i, messages = item
            body = {
                "messages": messages,
                "max_tokens": PARAMS.max_new_tokens,
                "temperature": PARAMS.temperature,
                "top_p": PARAMS.top_p,
                "top_k": PARAMS.top_k,
                "seed": SEED + i,
            }
            request = urllib.request.Request(
                f"{url}/v1/chat/completions", json.dumps(body).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=600) as reply:
                out = json.loads(reply.read())
            stopped = out["choices"][0]["finish_reason"] == "stop"
            return int(out["usage"]["completion_tokens"]) + int(stopped)  # the end token, like the others

        with ThreadPoolExecutor(slots) as pool:
            list(pool.map(ask, enumerate(prompts[:slots])))  # warm-up
            start = time.perf_counter()
            tokens = sum(pool.map(ask, enumerate(prompts)))
            wall = time.perf_counter() - start
    finally:
        server.terminate()
        server.wait()
    return Row("llama_server", len(prompts), tokens, wall, f"Q4_1 GGUF, {slots} slots, continuous batching")


def server_compare(binary: Path, n: int, batch: int, slots: int) -> tuple[list[Row], dict[str, float]]:
    """llama.cpp's server with parallel slots and the textsynth backend, same prompts."""
    prompts = make_prompts(n)
    log(f"llama_server: {n} prompts, {slots} slots")
    rows = [run_llama_server(binary, prompts, slots)]
    # the server just kept both cores busy: the load average would size the backend below the
    # server's thread count (threads.claim_threads), so fix it to the same count
    os.environ.setdefault("TEXTSYNTH_THREADS", str(torch.get_num_threads()))
    backend = TransformersBackend(ModelConfig(dtype=DTYPE, batch_size=batch), load(DTYPE))
    requests = make_requests(prompts)
    run_backend(backend, requests[:2], GenerationParams(**{**PARAMS.model_dump(), "max_new_tokens": 4}))
    log(f"textsynth_backend: {n} prompts, batch {batch}")
    examples, tokens, wall = run_backend(backend, requests, PARAMS)
    rows.append(Row("textsynth_backend", examples, tokens, wall, f"{DTYPE}, batch {batch}"))
    return rows, {
        "textsynth_backend vs llama_server (examples/s)": rows[1].examples_per_s / rows[0].examples_per_s,
        "textsynth_backend vs llama_server (tokens/s)": rows[1].tokens_per_s / rows[0].tokens_per_s,
    }


def paired(n: int, batch: int, rounds: int) -> tuple[list[Row], dict[str, float]]:
    """Plain `generate` and the backend in turn, `rounds` times; the median round of each."""
    loaded = load(DTYPE)
    unpacked = load_unpacked(loaded)
    backend = TransformersBackend(ModelConfig(dtype=DTYPE, batch_size=batch), loaded)
    prompts, warm = make_prompts(n), GenerationParams(**{**PARAMS.model_dump(), "max_new_tokens": 4})
    requests = make_requests(prompts)
    run_plain_generate(unpacked, backend, prompts[:2], warm, batch)
    run_backend(backend, requests[:2], warm)
    note = f"{DTYPE}, batch {batch}, median of {rounds}"
    plain: list[Row] = []
    ours: list[Row] = []

    def run_plain() -> None:
        torch.manual_seed(SEED)
        tokens, wall = run_plain_generate(unpacked, backend, prompts, PARAMS, batch)
        plain.append(Row("plain_generate", n, tokens, wall, note))

    def run_ours() -> None:
        examples, tokens, wall = run_backend(backend, requests, PARAMS)
        ours.append(Row("textsynth_backend", examples, tokens, wall, note))

    for round_no in range(1, rounds + 1):
        for run in (run_plain, run_ours) if round_no % 2 else (run_ours, run_plain):  # ABBA
            run()
        log(f"round {round_no}: backend {ours[-1].tokens_per_s / plain[-1].tokens_per_s:.2f}x plain generate")
    rows = [sorted(runs, key=lambda r: r.wall_s)[rounds // 2] for runs in (plain, ours)]
    return rows, compute_ratios({row.name: row for row in rows})


def default_build(subset: int, n: int | None, dtype: str) -> tuple[list[Row], dict[str, float]]:
    """The README's build, everything included, against the one-at-a-time baseline; a `dtype`
    other than auto replaces the pipeline's (which dtype a CPU class should pick)."""
    fp32 = load("float32")
    backend = TransformersBackend(ModelConfig(dtype="float32"), fp32)
    pipe = transformers.pipeline("text-generation", model=fp32.model, tokenizer=fp32.tokenizer)
    prompts = make_prompts(subset)
    run_baseline_pipeline(
        pipe, backend, prompts[:1], GenerationParams(**{**PARAMS.model_dump(), "max_new_tokens": 4})
    )
    log(f"baseline_pipeline: {subset} prompts, one at a time, fp32")
    torch.manual_seed(SEED)
    tokens, wall = run_baseline_pipeline(pipe, backend, prompts, PARAMS)
    rows = [Row("baseline_pipeline", subset, tokens, wall, "fp32, one at a time, every example kept")]
    del pipe
    pipeline = load_pipeline(PIPELINE)
    if dtype != "auto":
        pipeline = pipeline.updated("model.dtype", dtype)
    log(f"default build: {PIPELINE.name} as shipped, dtype {pipeline.model.dtype}, model load included")
    with tempfile.TemporaryDirectory(prefix="textsynth-bench-") as tmp:
        start = time.perf_counter()
        result = run_build(pipeline, n=n, out=Path(tmp) / "run", quiet=True, pipeline_path=PIPELINE)
        wall = time.perf_counter() - start
    s = result.summary
    phases = ", ".join(f"{k} {v:.1f}" for k, v in s.phases.items())
    rows.append(Row("default_build_kept", s.kept, s.gen.tokens, wall, f"{s.generated} generated; {phases} s"))
    ratio = rows[1].examples_per_s / rows[0].examples_per_s
    return rows, {"default build kept/s vs baseline_pipeline examples/s": ratio}


def scaling(ns: Sequence[int], batches: Sequence[int]) -> list[Row]:
    """textsynth_backend alone over a grid of N × batch size."""
    loaded = load(DTYPE)
    warm = GenerationParams(**{**PARAMS.model_dump(), "max_new_tokens": 4})
    rows: list[Row] = []
    for batch in batches:
        backend = TransformersBackend(ModelConfig(dtype=DTYPE, batch_size=batch), loaded)
        run_backend(backend, make_requests(make_prompts(2)), warm)
        for n in ns:
            log(f"scaling: textsynth_backend n={n} batch={batch}")
            examples, tokens, wall = run_backend(backend, make_requests(make_prompts(n)), PARAMS)
            rows.append(Row(f"n={n} batch={batch}", examples, tokens, wall))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64, help="prompts per method (default 64)")
    parser.add_argument(
        "--batch", type=int, default=ModelConfig().batch_size, help="rows per batch (default: as shipped)"
    )
    parser.add_argument(
        "--baseline-subset", type=int, default=6, help="prompts the slow pipeline baseline runs (default 6)"
    )
    parser.add_argument("--dtype", default="auto", help="auto (what a build runs here), float32, bfloat16")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument("--scaling", action="store_true", help="only textsynth_backend over N × batch")
    parser.add_argument("--default-build", action="store_true", help="the README build against the baseline")
    parser.add_argument("--build-n", type=int, metavar="N", help="--default-build: examples (default 60)")
    parser.add_argument("--llama-server", type=Path, metavar="PATH", help="llama-server binary")
    parser.add_argument("--paired", type=int, metavar="R", help="plain generate, backend: R rounds")
    parser.add_argument("--slots", type=int, default=16, help="llama-server parallel slots (default 16)")
    parser.add_argument(
        "--skip",
        nargs="+",
        default=[],
        choices=["llama_cpp", "textsynth_end_to_end"],
        help="methods to leave out (the sequential llama_cpp run takes minutes at large --n)",
    )
    parser.add_argument("--scaling-n", type=int, nargs="+", default=list(SCALING_N), metavar="N")
    parser.add_argument("--scaling-batch", type=int, nargs="+", default=list(SCALING_BATCH), metavar="B")
    args = parser.parse_args(argv)
    for name in ("n", "batch", "baseline_subset"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    global DTYPE
    args = parse_args(argv)
    DTYPE = resolve_dtype(args.dtype)
    env = environment()
    print(
        f"# {env['cpu']}, {env['dtype']}; torch {env['torch']} ({env['torch_threads']} threads), "
        f"transformers {env['transformers']}; params {env['params']}"
    )
    if env["load_avg_1min_at_start"] > 0.5:
        log(f"warning: load average {env['load_avg_1min_at_start']:.2f} at start; timings will be noisy")
    results: dict[str, Any] = {"environment": env}
    if args.scaling:
        rows = scaling(args.scaling_n, args.scaling_batch)
        print_table(rows)
        results["scaling"] = [row.to_dict() for row in rows]
    else:
        if args.default_build:
            (rows, ratios), notes = default_build(args.baseline_subset, args.build_n, args.dtype), []
        elif args.paired:
            (rows, ratios), notes = paired(args.n, args.batch, args.paired), []
        elif args.llama_server:
            (rows, ratios), notes = server_compare(args.llama_server, args.n, args.batch, args.slots), []
        else:
            rows, ratios, notes = compare(args.n, args.batch, args.baseline_subset, args.skip)
        print_table(rows)
        for note in notes:
            print(note)
        print()
        for label, value in ratios.items():
            print(f"{label}: {value:.2f}x")
        results.update(
            n=args.n, batch=args.batch, rows=[row.to_dict() for row in rows], ratios=ratios, notes=notes
        )
    results["peak_rss_mib"] = peak_rss_mib()
    results["load_avg_1min_at_end"] = os.getloadavg()[0]
    print(f"peak RSS: {results['peak_rss_mib']:.0f} MiB")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
