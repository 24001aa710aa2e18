"""Write a modelopt-calibrated Hugging Face model where TensorRT-LLM can load it.

Two formats, picked by the recipe (see `flow_for`):
- "pytorch": modelopt's unified HF checkpoint (`export_hf_checkpoint`), loaded directly by
  `trtllm-bench --model_path` with the PyTorch backend. Serves FP8, INT4 AWQ, W4A8 AWQ, NVFP4, BF16.
- "engine": a legacy TensorRT-LLM checkpoint (`export_tensorrt_llm_checkpoint`) that `trtllm-build`
  turns into an engine. Needed for INT8 SmoothQuant and any 2:4 sparse model, which the
  unified export and the PyTorch backend do not serve (modelopt hf_ptq.py does the same).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine import registry
from engine.errors import ModelLoadError, UnsupportedOnDevice

# Sub-folders of an export directory.
HF_DIR = "hf"  # unified HF checkpoint (pytorch flow)
TRTLLM_CKPT_DIR = "trtllm_checkpoint"  # legacy checkpoint (engine flow)
META_DIR = "hf_meta"  # HF config + tokenizer, so trtllm-bench can tokenize in the engine flow
ENGINE_DIR = "engine"  # trtllm-build output


def flow_for(precision: str, sparsity: str = "none") -> str:
    """"pytorch" (no build) or "engine" (legacy trtllm-build) for this recipe."""
    if sparsity != "none":
        return "engine"  # unified HF export does not carry 2:4 sparsity
    return registry.precision(precision).trtllm_flow


def _decoder_type(model: Any) -> str:
    """modelopt's decoder_type name for the legacy export (its `get_model_type` knows the mapping)."""
    try:
        from modelopt.torch.export.model_utils import get_model_type

        name = get_model_type(model)
    except (ImportError, AttributeError, TypeError):  # modelopt without that helper: use the HF model_type
        name = None
    if not name:
        name = getattr(getattr(model, "config", None), "model_type", None)
    if not name:
        raise ModelLoadError("Cannot tell the model's architecture for the TensorRT-LLM checkpoint "
                             "export (its config has no model_type).")
    return name


def _ensure_architectures(model: Any) -> None:
    # GGUF-loaded configs have architectures=None; TensorRT-LLM picks its model class from it.
    cfg = getattr(model, "config", None)
    if cfg is not None and not getattr(cfg, "architectures", None):
        cfg.architectures = [type(model).__name__]


def export_for_trtllm(model: Any, tokenizer: Any, export_dir: str | Path, precision: str,
                      sparsity: str = "none") -> Path:
    """Export a calibrated (modelopt-quantized and/or sparsified) HF causal LM plus its tokenizer.

    Returns the folder to pass to trtllm-bench as `--model_path` (pytorch flow) or the legacy
    checkpoint folder (engine flow; `export_dir/hf_meta` then holds config + tokenizer).
    """
    import torch
    from modelopt.torch.export import (
        export_hf_checkpoint,
        export_tensorrt_llm_checkpoint,
    )

    export_dir = Path(export_dir)
    _ensure_architectures(model)
    flow = flow_for(precision, sparsity)
    dtype = getattr(model, "dtype", None)
    if dtype not in (torch.float16, torch.bfloat16):
        dtype = torch.bfloat16 if precision != "fp16" else torch.float16
    if flow == "pytorch":
        out = export_dir / HF_DIR
        out.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            export_hf_checkpoint(model, dtype=dtype, export_dir=out)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        return out
    out = export_dir / TRTLLM_CKPT_DIR
    out.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        export_tensorrt_llm_checkpoint(model, decoder_type=_decoder_type(model), dtype=dtype,
                                       export_dir=out, inference_tensor_parallel=1,
                                       inference_pipeline_parallel=1)
    meta = export_dir / META_DIR
    meta.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(meta)
    if tokenizer is not None:
        tokenizer.save_pretrained(meta)
    return out


def exported_quant_algo(checkpoint_dir: str | Path) -> tuple[str | None, str | None]:
    """(quant_algo, kv_cache_quant_algo) recorded in an export, or raise if it is not one."""
    d = Path(checkpoint_dir)
    hf_q = d / "hf_quant_config.json"
    if hf_q.is_file():
        q = json.loads(hf_q.read_text()).get("quantization", {})
        return q.get("quant_algo"), q.get("kv_cache_quant_algo")
    cfg = d / "config.json"
    if not cfg.is_file():
        raise ModelLoadError(f"No exported checkpoint in {d} (config.json is missing). "
                             "Run the calibration and export again.")
    c = json.loads(cfg.read_text())
    if isinstance(c.get("quantization"), dict):  # legacy TensorRT-LLM checkpoint
        q = c["quantization"]
        return q.get("quant_algo"), q.get("kv_cache_quant_algo")
    qc = c.get("quantization_config") or {}
    return qc.get("quant_algo"), qc.get("kv_cache_quant_algo")


def check_export_matches(checkpoint_dir: str | Path, precision: str, kv_cache: str = "auto") -> None:
    """Refuse to benchmark an export whose recorded format is not the recipe's (it would measure
    the wrong thing, e.g. an unquantized model labelled FP8)."""
    expected = registry.precision(precision).trtllm_quant_algo
    found, found_kv = exported_quant_algo(checkpoint_dir)
    if (found or None) != expected:
        raise UnsupportedOnDevice(
            f"The export in {checkpoint_dir} is {found or 'unquantized'}, but the recipe "
            f"{precision} needs {expected or 'unquantized'}. Calibrate and export the recipe again.")
    if kv_cache == "fp8" and found_kv != "FP8":
        raise UnsupportedOnDevice(
            f"The recipe asks for an FP8 KV cache but the export in {checkpoint_dir} records "
            f"{found_kv or 'none'}. Calibrate with the FP8 KV cache and export again.")
