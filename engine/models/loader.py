"""Load a causal LM and its tokenizer from the bundled GGUF, a local folder or a Hugging Face id.

Only safetensors and GGUF weights are accepted (pickled .bin/.pt files can run code on load), and
`trust_remote_code` stays off unless the user opts in.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ModelLoadError
from engine.models import gguf_cache
from engine.models.bundled import BUNDLED_HF_ID, BUNDLED_NAME, bundled_gguf
from engine.models.facts import model_facts
from engine.spec import BUNDLED_MODEL, ModelRef

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str  # what to show the user
    hf_id: str | None  # Hugging Face id when known (for TensorRT-LLM's --model and estimates)
    facts: dict = field(default_factory=dict)


@dataclass(frozen=True)
class WeightsLocation:
    """Where from_pretrained should read: a folder or hub id, plus the GGUF file if any."""

    path: str
    gguf_file: str | None
    name: str
    hf_id: str | None


def resolve(ref: ModelRef) -> WeightsLocation:
    """Decide where the weights live and refuse unsafe or missing ones, before any heavy import."""
    if ref.source == BUNDLED_MODEL:
        folder, gguf = bundled_gguf()
        return WeightsLocation(str(folder), gguf, BUNDLED_NAME, BUNDLED_HF_ID)
    path = Path(ref.source).expanduser()
    if path.exists() or ref.source.startswith((".", "/", "~")) or not HF_ID.match(ref.source):
        return _resolve_local(path, ref)
    return WeightsLocation(ref.source, ref.gguf_file, ref.source, ref.source)


def _resolve_local(path: Path, ref: ModelRef) -> WeightsLocation:
    if not path.exists():
        raise ModelLoadError(
            f"Model folder '{path}' does not exist. Give an existing folder with config.json and "
            "*.safetensors (or a .gguf file), a Hugging Face id such as HuggingFaceTB/SmolLM2-135M, "
            "or 'bundled' for the model that ships with Tradeoff Lab.")
    if path.is_file():
        if path.suffix == ".gguf":
            return WeightsLocation(str(path.parent), path.name, path.name, None)
        raise ModelLoadError(f"'{path}' is a file; give the model's folder (or a .gguf file).")
    files = [p.name for p in path.iterdir()]
    ggufs = sorted(f for f in files if f.endswith(".gguf"))
    if ref.gguf_file or ggufs:
        return WeightsLocation(str(path), ref.gguf_file or ggufs[0], path.name, None)
    if any(f.endswith(".safetensors") for f in files):
        if "config.json" not in files:
            raise ModelLoadError(f"'{path}' has safetensors weights but no config.json; "
                                 "copy the model's config.json into the folder.")
        return WeightsLocation(str(path), None, path.name, None)
    if any(f.endswith(PICKLE_SUFFIXES) for f in files):
        raise ModelLoadError(
            f"'{path}' holds only pickled weights ({', '.join(f for f in files if f.endswith(PICKLE_SUFFIXES))}). "
            "Pickle files can run arbitrary code when loaded, so Tradeoff Lab loads safetensors or GGUF only. "
            "Convert once with: python -c \"from transformers import AutoModelForCausalLM as M; "
            f"M.from_pretrained('{path}').save_pretrained('{path}-safetensors')\" and use the new folder.")
    raise ModelLoadError(f"'{path}' has no model weights (*.safetensors or *.gguf).")


def load_model(ref: ModelRef, device: str = "cpu", dtype: Any = None) -> LoadedModel:
    loc = resolve(ref)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(trust_remote_code=ref.trust_remote_code, revision=ref.revision)
    if loc.gguf_file:
        kwargs["gguf_file"] = loc.gguf_file
    if loc.hf_id and not Path(loc.path).exists():
        # A hub id: use the local cache when it has the model; otherwise fail fast when the hub is
        # unreachable instead of sitting through huggingface_hub's retries.
        kwargs["local_files_only"] = _cached(loc.path, kwargs) or not hub_reachable()
    local_gguf = Path(loc.path, loc.gguf_file) if loc.gguf_file and Path(loc.path).is_dir() else None
    try:
        if local_gguf:  # converted once, then read from the kept copy (engine/models/gguf_cache.py)
            del kwargs["gguf_file"]
            tokenizer = gguf_cache.load_tokenizer(local_gguf, **kwargs)
            model = gguf_cache.load_causal_lm(local_gguf, dtype or torch.float32, **kwargs)
        else:
            tokenizer = AutoTokenizer.from_pretrained(loc.path, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(
                loc.path, dtype=dtype or torch.float32, use_safetensors=None if loc.gguf_file else True, **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError/ValueError/EnvironmentError with long texts
        raise ModelLoadError(_explain_load_failure(loc, ref, exc)) from exc
    model.eval().to(device)
    if getattr(model.config, "architectures", None) is None:
        # GGUF-loaded configs lack it; modelopt's export needs it.
        model.config.architectures = [type(model).__name__]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model, tokenizer, loc.name, loc.hf_id, model_facts(model.config, model))


def _explain_load_failure(loc: WeightsLocation, ref: ModelRef, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}"
    low = text.lower()
    where = f"'{loc.path}'"
    if "trust_remote_code" in low:
        return (f"{where} needs custom code from its repository. Tradeoff Lab does not run remote code "
                "unless you opt in (--trust-remote-code in the CLI, the checkbox in the app); "
                "only do that for repositories you trust.")
    if "unrecognized configuration class" in low or "does not recognize this architecture" in low \
            or "unrecognized model" in low or "not supported" in low and "architecture" in low:
        return (f"{where} is not a causal language model architecture that transformers can load "
                f"({exc}). Tradeoff Lab works with decoder-only text models (Llama, Mistral, Qwen, ...).")
    if "safetensors" in low and ("no file named" in low or "does not appear to have" in low):
        return (f"{where} publishes no safetensors weights (only pickled .bin files?). Tradeoff Lab loads "
                "safetensors or GGUF only; pick a repository or revision that has *.safetensors.")
    if any(s in low for s in ("gated", "401", "403", "private", "restricted")):
        return (f"{where} is gated or private. Accept its license on Hugging Face and log in "
                "(`huggingface-cli login` or HF_TOKEN), or download it and give the local folder.")
    if any(s in low for s in ("connect", "offline", "resolve", "network", "timed out", "cannot find the requested files")):
        return (f"Could not reach the Hugging Face hub for {where}, and it is not in the local cache. "
                "Download the model on a machine with internet (huggingface-cli download) and give the "
                "local folder, or use 'bundled'.")
    if "not a valid model identifier" in low or "404" in low or "repository not found" in low:
        return (f"{where} is not a model on Hugging Face (or not visible to you). Check the spelling, "
                "or give a local folder, or 'bundled'.")
    return f"Could not load the model {where}: {text}"


def _cached(repo_id: str, kwargs: dict) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, kwargs.get("gguf_file") or "config.json",
                                   revision=kwargs.get("revision"))
    return isinstance(found, str)


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """A quick TCP check of the Hugging Face endpoint (honours HF_ENDPOINT and HF_HUB_OFFLINE)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout_s).close()
        return True
    except OSError:
        return False
