"""A converted copy of a local GGUF model, kept so that the next load skips the conversion.

transformers reads a GGUF by parsing its metadata three times (config, tokenizer, weights) and
dequantizing every tensor in Python: about 26 s for the bundled 135M model on a 2-core CPU, in every
job and in every part of a job spread over Ray. The first load saves what it produced (the tokenizer,
and config + safetensors in the dtype it was loaded in) under the cache folder; later loads read that
copy as a plain safetensors folder in about 2 s. The copy holds exactly the tensors the GGUF load gave
(tests/unit/test_gguf_cache.py compares them), so no result depends on which path ran.

A copy is named after the GGUF file's path, size and modification time and the transformers version, so
an edited file or a new library converts again. It is written aside and renamed, so a concurrent
load never reads half a copy; a damaged or unwritable copy is only a lost shortcut, never an error.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from engine.paths import cache_dir

READY = "converted.txt"  # written last: a folder without it is incomplete


def copy_folder(gguf_path: Path, what: str) -> Path:
    """Where the converted copy of `gguf_path` lives; `what` is 'tokenizer' or 'model-<dtype>'."""
    import transformers

    path = gguf_path.resolve()
    info = path.stat()
    stamp = f"{path}|{info.st_size}|{info.st_mtime_ns}|{transformers.__version__}"
    key = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{path.stem}-{key}" / what


def ready(folder: Path) -> bool:
    return (folder / READY).is_file()


def save(folder: Path, *objects: Any, source: Path) -> None:
    """save_pretrained each object (safetensors) into `folder`, atomically; failures are ignored."""
    partial = folder.with_name(f"{folder.name}.{os.getpid()}.partial")
    try:
        shutil.rmtree(partial, ignore_errors=True)
        for obj in objects:
            _save_one(obj, partial)
        (partial / READY).write_text(f"converted from {source}\n")
        partial.rename(folder)
    except (OSError, ValueError, RuntimeError):  # a read-only or full disk, or another process renamed first
        shutil.rmtree(partial, ignore_errors=True)


def _save_one(obj: Any, folder: Path) -> None:
    if not hasattr(obj, "config"):  # a tokenizer: its own files
        obj.save_pretrained(str(folder))
        return
    # A GGUF-loaded model refuses save_pretrained (its GGUF quantizer is attached), though its tensors are
    # plain dequantized ones: save them and the config directly. save_model drops tied duplicates (lm_head).
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    obj.config.save_pretrained(str(folder))
    save_model(obj, str(folder / "model.safetensors"), metadata={"format": "pt"})


def model_kind(dtype: Any) -> str:
    return f"model-{str(dtype).removeprefix('torch.')}"


def load_tokenizer(gguf_path: Path, **kwargs: Any) -> Any:
    """The GGUF's tokenizer, from the converted copy when there is one (converting and keeping it if not)."""
    from transformers import AutoTokenizer

    folder = copy_folder(gguf_path, "tokenizer")
    if ready(folder):
        try:
            return AutoTokenizer.from_pretrained(str(folder), **_local(kwargs))
        except Exception:  # noqa: BLE001 - a damaged copy (tokenizers raises plain Exception): convert again
            pass
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, **kwargs)
    save(folder, tokenizer, source=gguf_path)
    return tokenizer


def load_causal_lm(gguf_path: Path, dtype: Any, **kwargs: Any) -> Any:
    """The GGUF's model in `dtype`, from the converted copy when there is one (converting and keeping it if not)."""
    from transformers import AutoModelForCausalLM

    folder = copy_folder(gguf_path, model_kind(dtype))
    if ready(folder):
        try:
            return AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, use_safetensors=True,
                                                        **_local(kwargs))
        except Exception:  # noqa: BLE001 - a damaged copy: convert again
            pass
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=dtype,
                                                 **kwargs)
    if getattr(model.config, "architectures", None) is None:
        model.config.architectures = [type(model).__name__]  # GGUF-loaded configs lack it
    save(folder, model, source=gguf_path)
    return model


def _local(kwargs: dict) -> dict:
    """The copy is a local folder: no revision, never the hub."""
    return {k: v for k, v in kwargs.items() if k not in ("revision", "local_files_only")} | {"local_files_only": True}
