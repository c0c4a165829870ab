"""Model load time: the embedded GGUF dequantized by transformers against textsynth's dense cache.

Dequantizing SmolLM2-135M-Instruct's Q4_1 GGUF takes transformers ~16 s, so textsynth keeps a
dense safetensors copy per GGUF sha256 and dtype. This script times, in one process and for each
dtype, in its own fresh temporary TEXTSYNTH_CACHE:

1. gguf_baseline   transformers `from_pretrained(gguf_file=..., dtype=...)` + tokenizer
2. first_load      textsynth `load_model` with an empty cache: dequantize, write the copy, load it
3. cached_load     textsynth `load_model` again (median of --repeats), process caches cleared,
                   including the GGUF's sha256, so each is what a new build pays

and checks that the cached model's weights equal the baseline's. Imports are warmed up first.

    python benchmarks/bench_load.py [--dtypes auto float32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

from textsynth import models
from textsynth.config import ModelConfig
from textsynth.hardware import cpu_class
from textsynth.models import default_gguf, load_model, quiet_transformers, resolve_dtype


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")


def _fresh_load(dtype: str) -> tuple[float, models.LoadedModel]:
    models._LOADED.clear()
    models._sha256_of.cache_clear()
    start = time.perf_counter()
    loaded = load_model(ModelConfig(dtype=dtype))
    return time.perf_counter() - start, loaded


def bench(dtype: str, repeats: int) -> dict[str, float | bool]:
    gguf = default_gguf()
    start = time.perf_counter()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    baseline = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype)
    )
    gguf_s = time.perf_counter() - start
    first_s, _ = _fresh_load(dtype)
    runs = [_fresh_load(dtype) for _ in range(repeats)]
    cached_s = statistics.median(s for s, _ in runs)
    reference, cached = baseline.state_dict(), runs[-1][1].model.state_dict()
    same = sorted(reference) == sorted(cached)
    same = same and all(torch.equal(reference[k], cached[k]) for k in reference)
    return {"gguf": gguf_s, "first": first_s, "cached": cached_s, "same": same}


def main() -> None:
    print(f"# CPU: {cpu_class()}", flush=True)  # speed depends on the class: AMX, AVX-512 BF16, AVX2
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["auto", "float32"], help="dtypes to time")
    parser.add_argument("--repeats", type=int, default=3, help="cached loads per dtype (median)")
    args = parser.parse_args()
    quiet_transformers()
    dtypes = list(dict.fromkeys(resolve_dtype(d) for d in args.dtypes))
    gguf = default_gguf()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)  # warms the gguf imports up
    results = {}
    for dtype in dtypes:  # a fresh cache each: a first load writes the float32 copy too
        with tempfile.TemporaryDirectory(prefix="textsynth-bench-load-") as cache:
            os.environ["TEXTSYNTH_CACHE"] = cache
            results[dtype] = bench(dtype, args.repeats)
    print(
        f"{_cpu_name()}, {len(os.sched_getaffinity(0))} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
    header = f"{'dtype':<10}{'gguf_baseline s':>17}{'first_load s':>14}{'cached_load s':>15}{'speedup':>9}"
    print(f"{header}  weights")
    for dtype, r in results.items():
        print(
            f"{dtype:<10}{r['gguf']:>17.2f}{r['first']:>14.2f}{r['cached']:>15.2f}"
            f"{r['gguf'] / r['cached']:>8.1f}x  {'identical' if r['same'] else 'DIFFER'}"
        )


if __name__ == "__main__":
    main()
