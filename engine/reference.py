"""Published TensorRT-LLM / Model Optimizer measurements (assets/published_measurements.csv),
normalized: catalog model and GPU ids, our precision names, numeric batch/TP/ISL/OSL.

Every row keeps its source URL, engine version and notes; provenance is "published".
Mappings that involve an assumption say so in `mapping_note`.
"""

import re
from functools import lru_cache

import numpy as np
import pandas as pd

from engine import registry
from engine.paths import asset

MODEL_IDS = {
    "Llama 2 7B": "meta-llama/Llama-2-7b-hf", "Llama 2 13B": "meta-llama/Llama-2-13b-hf",
    "Llama 2 70B": "meta-llama/Llama-2-70b-hf", "Llama 3 8B": "meta-llama/Meta-Llama-3-8B",
    "Llama 3 70B": "meta-llama/Meta-Llama-3-70B", "Llama 3.1 8B": "meta-llama/Llama-3.1-8B",
    "Llama 3.1 70B": "meta-llama/Llama-3.1-70B", "Llama 3.1 405B": "meta-llama/Llama-3.1-405B",
    "Llama 3.1 8B Instruct": "meta-llama/Llama-3.1-8B", "Llama 3.1 70B Instruct": "meta-llama/Llama-3.1-70B",
    "GPT-J 6B": "EleutherAI/gpt-j-6b", "Mixtral 8x7B": "mistralai/Mixtral-8x7B-v0.1",
    "Mixtral 8x22B": "mistralai/Mixtral-8x22B-v0.1", "Falcon 40B": "tiiuae/falcon-40b",
    "MPT-30B": "mosaicml/mpt-30b", "Qwen3-8B": "Qwen/Qwen3-8B",
}
# (catalog id, note when the mapping is an assumption)
GPU_IDS = {
    "H200 SXM 141GB": ("h200", ""), "H100 SXM 80GB": ("h100-sxm", ""),
    "A100 SXM4 80GB": ("a100-sxm-80gb", ""), "GH200 480GB": ("gh200", ""),
    "A100 80GB": ("a100-sxm-80gb", "A100 variant not stated; the notes say the blog of the same era used SXM 80GB"),
}
SPARSE_SUFFIX = " + 2:4 structured sparsity"


def precision_of(raw: str) -> tuple[str | None, str | None]:
    """A published precision name -> (our precision, sparsity pattern), by the registry's aliases."""
    sparsity = "none"
    if isinstance(raw, str) and raw.endswith(SPARSE_SUFFIX):
        raw, sparsity = raw[: -len(SPARSE_SUFFIX)], "2:4"
    prec = registry.precision_from_alias(raw) if isinstance(raw, str) else None
    return (prec.name, sparsity) if prec else (None, None)
COLUMNS = ["model", "model_id", "gpu", "gpu_id", "tp", "num_gpus", "precision", "precision_raw", "sparsity", "batch",
           "batch_raw", "isl", "osl", "metric", "value", "unit", "source", "source_label",
           "engine_version", "notes", "mapping_note", "provenance"]


def source_label(url: str) -> str:
    """Short, human label of a source URL: repo, file and commit."""
    m = re.search(r"github\.com/NVIDIA/([^/]+)/blob/([0-9a-f]{8})[0-9a-f]*/(\S+?)(?:\s|$)", url)
    if not m:
        return url[:60]
    repo, commit, path = m.groups()
    section = " (online serving)" if "Online Serving" in url else ""
    return f"{repo} {path.split('/')[-1]}@{commit}{section}"


def _int_or_none(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(f) if f == f and f == int(f) else None  # f == f is False for NaN


@lru_cache(maxsize=1)
def _load() -> pd.DataFrame:
    raw = pd.read_csv(asset("published_measurements.csv"), dtype=str)
    rows = []
    for r in raw.to_dict("records"):
        gpu_id, gnote = GPU_IDS.get(r["gpu"], (None, "")) if isinstance(r["gpu"], str) else (None, "")
        prec, sp = precision_of(r["precision"])
        rows.append(dict(
            model=r["model"], model_id=MODEL_IDS.get(r["model"]), gpu=r["gpu"], gpu_id=gpu_id,
            tp=_int_or_none(r["tp"]), num_gpus=_int_or_none(r["num_gpus"]), precision=prec,
            precision_raw=r["precision"],
            sparsity=sp, batch=_int_or_none(r["batch_size_or_concurrency"]),
            batch_raw=r["batch_size_or_concurrency"], isl=_int_or_none(r["isl"]), osl=_int_or_none(r["osl"]),
            metric=r["metric"], value=float(r["value"]), unit=r["unit"],
            source=r["source_url_or_path"], source_label=source_label(r["source_url_or_path"]),
            engine_version=r["engine_and_version"], notes=r["notes"], mapping_note=gnote,
            provenance="published"))
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("tp", "num_gpus", "batch", "isl", "osl"):
        df[c] = df[c].astype("Int64")
    return df


def published_frame() -> pd.DataFrame:
    """All published rows, normalized (a copy: callers may modify it)."""
    return _load().copy()


THROUGHPUT_METRICS = ("output_tokens_per_sec_total", "output_tokens_per_sec", "output_tokens_per_sec_per_gpu")


def fixed_batch_throughput(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Output-throughput rows measured at an integer batch, as total tokens/s over the TP group.

    `estimable` is False where the row lacks what an estimate needs (model, GPU, TP, ISL or OSL not
    stated or not in the catalogs); `why_not` says which. `output_tokens_per_sec` rows whose table
    does not say total vs per GPU are read like the same document's explicit multi-GPU rows, else as
    totals (`reading` says which; their notes flag the ambiguity).
    """
    df = published_frame() if df is None else df
    sel = df[df.metric.isin(THROUGHPUT_METRICS) & df.batch.notna()].copy()
    per_gpu = sel.metric == "output_tokens_per_sec_per_gpu"
    # A table that does not say total vs per GPU is read like the explicit multi-GPU rows of the same
    # document (v0.6.1 performance.md labels its H100 rows per GPU); with none, as a total.
    explicit = sel[(sel.tp.fillna(1) > 1) & sel.metric.isin(THROUGHPUT_METRICS[0::2])]
    per_gpu_docs = set(explicit[explicit.metric == THROUGHPUT_METRICS[2]].source)
    ambiguous = sel.metric == "output_tokens_per_sec"
    per_gpu = per_gpu | (ambiguous & sel.source.isin(per_gpu_docs))
    sel["reading"] = np.where(per_gpu, "per GPU", "total")
    sel["output_tokens_per_sec"] = sel.value * sel.tp.astype("float").where(per_gpu, 1.0)
    return _mark_estimable(sel)


def _mark_estimable(sel: pd.DataFrame) -> pd.DataFrame:
    """Add `why_not` (what the row does not state) and `estimable` (states all an estimate needs)."""
    why = []
    for r in sel.itertuples():
        miss = [n for n, v in (("model", r.model_id), ("GPU", r.gpu_id), ("TP", r.tp), ("ISL", r.isl),
                               ("OSL", r.osl), ("precision", r.precision)) if v is None or pd.isna(v)]
        why.append("not stated/mapped: " + ", ".join(miss) if miss else "")
    sel["why_not"] = why
    sel["estimable"] = sel.why_not == ""
    return sel.reset_index(drop=True)


def max_throughput(df: pd.DataFrame | None = None) -> pd.DataFrame:
    """Max-throughput rows ('max_tput': trtllm-bench at infinite request rate, batch chosen by the
    benchmark) as total output tokens/s, with `estimable`/`why_not` as in `fixed_batch_throughput`."""
    df = published_frame() if df is None else df
    sel = df[df.metric.isin(THROUGHPUT_METRICS) & (df.batch_raw == "max_tput")].copy()
    per_gpu = sel.metric == "output_tokens_per_sec_per_gpu"
    sel["output_tokens_per_sec"] = sel.value * sel.tp.astype("float").where(per_gpu, 1.0)
    sel["reading"] = np.where(per_gpu, "per GPU", "total")
    return _mark_estimable(sel)
