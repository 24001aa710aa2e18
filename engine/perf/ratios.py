"""Published speedup ratios (a format vs FP16 at the same batch) as calibration evidence.

The Model Optimizer benchmark.md versions of 2024 (commits 06a15538: modelopt v0.11 / TensorRT-LLM v0.9,
and 2a3f7cf2: modelopt v0.15 / TensorRT-LLM v0.11) give per-GPU speedups of FP8 and INT4 AWQ over FP16
for Llama 3 8B / 70B on H100 at batch 1/2/32/64, but state neither ISL/OSL nor TP. Their absolute
tokens/s cannot be estimated without those; a ratio of two formats at the same batch depends on them far
less, and it is the only published evidence besides the current table on how weight-only INT4 fares as
batches grow. Assumptions (each documented here, none looked up from the table we check against):

- Lengths: the documents do not state them. Their own memory-saving column bounds them: INT4 AWQ saves
  2.37x at batch 2 but 1.76x at batch 64 for Llama 3 8B, which takes ~90 MB per sequence, i.e. about
  700 tokens of 16-bit KV cache (not the 2176-4096 of the long scenarios). So every ratio is predicted
  under each split with ISL and OSL in {128, 512, 1024} and 512 <= ISL + OSL <= 1152. A document ran one
  setup for all its rows, so the split is a nuisance parameter per document: the fit uses, for each
  document, the split under which its rows fit best (profile likelihood), and says which. Rows that
  state ISL/OSL (the TensorRT-LLM quantization blog: 1024/128, TP1) use them.
- TP: "Speedup is normalized to the GPU count" says formats ran on different GPU counts. Each format runs
  on the smallest TP whose memory plan holds the batch at the scenario's lengths (FP16 70B needs 2+ GPUs).
- GPU: "H100 80GB" is read as H100 SXM, the H100 of the TensorRT-LLM performance documents of that time.
- Harness: "full batch inference (no inflight batching)", i.e. the static-batch harness.
"""

import dataclasses
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.perf import arch as arch_mod
from engine.perf import catalog, memory
from engine.perf.formats import kv_bytes
from engine.perf.model import Items, Shape, work_items

RATIO_LENGTHS = tuple((i, o) for i in (128, 512, 1024) for o in (128, 512, 1024) if 512 <= i + o <= 1152)
RATIO_TPS = (1, 2, 4, 8)
# Each ratio residual counts half a throughput point: its lengths and TP are assumed, not stated.
RATIO_WEIGHT = 0.5
RATIO_GPUS = {"H100 80GB (variant not stated)": "h100-sxm"}
RATIO_BASE = {"speedup_vs_fp16": "fp16"}
RATIO_COLUMNS = ["gpu_id", "model_id", "precision", "base_precision", "batch", "isl", "osl", "tp",
                 "speedup_per_gpu", "source", "harness"]


@lru_cache(maxsize=1)
def _published_ratios() -> pd.DataFrame:
    from engine.reference import published_frame

    df = published_frame()
    # A speedup "when the first token latency is constrained" compares different batches: not a ratio
    # at the same batch, so it is left out.
    sel = df[df.metric.isin(RATIO_BASE) & df.gpu.isin(RATIO_GPUS) & df.batch.notna()
             & df.model_id.notna() & df.precision.notna() & (df.sparsity == "none")
             & ~df.notes.fillna("").str.contains("constrained")]
    bench = sel.engine_version.str.contains("trtllm-bench")  # older documents: static batches
    return pd.DataFrame({
        "gpu_id": sel.gpu.map(RATIO_GPUS), "model_id": sel.model_id, "precision": sel.precision,
        "base_precision": sel.metric.map(RATIO_BASE), "batch": sel.batch.astype(int),
        "isl": sel.isl.astype("float"), "osl": sel.osl.astype("float"), "tp": sel.tp.astype("float"),
        "speedup_per_gpu": sel.value.astype(float), "source": sel.source_label,
        "harness": np.where(bench, "trtllm-bench", "static")}).reset_index(drop=True)


def published_ratios() -> pd.DataFrame:
    """Speedup rows of the shipped published measurements that ratio calibration can use."""
    return _published_ratios().copy()


def _smallest_tp(shape: Shape) -> int | None:
    for tp in RATIO_TPS:
        if shape.arch.heads % tp == 0 and tp <= shape.gpu.max_tp and memory.max_batch(
                shape.arch, shape.gpu, shape.precision, False, tp, shape.isl, shape.osl,
                shape.kv_bytes) >= shape.batch:
            return tp
    return None


def ratio_shapes(rows: pd.DataFrame) -> tuple[list[Shape], np.ndarray, np.ndarray]:
    """Shapes to time: for each row, scenario and side (format, base), one shape at its smallest TP.

    Returns (shapes, row index per pair of shapes, scenario index); shapes come in pairs
    (format, base). Scenarios where either side fits on no TP are left out.
    """
    shapes, owner, scen = [], [], []
    for i, r in enumerate(rows.to_dict("records")):
        try:
            a, g = arch_mod.resolve(r["model_id"]), catalog.gpu(r["gpu_id"])
        except Exception:
            continue
        stated = pd.notna(r.get("isl")) and pd.notna(r.get("osl"))
        lengths = [(int(r["isl"]), int(r["osl"]))] if stated else RATIO_LENGTHS
        for j, (isl, osl) in enumerate(lengths):
            pair = []
            for prec in (r["precision"], r["base_precision"]):
                kvb = kv_bytes(prec, "auto", g.peak("fp8") is not None)
                sh = Shape(a, g, prec, 1, int(r["batch"]), isl, osl, kvb, False, r["harness"])
                tp = int(r["tp"]) if pd.notna(r.get("tp")) else _smallest_tp(sh)
                if tp is None:
                    break
                pair.append(dataclasses.replace(sh, tp=tp))
            if len(pair) == 2:
                shapes += pair
                owner.append(i)
                scen.append(j)
    return shapes, np.array(owner, dtype=int), np.array(scen, dtype=int)


class RatioTimer:
    """Predicted per-GPU speedup per ratio row for any parameters (work items built once).

    Without measured values it returns the geometric mean over the row's length scenarios; with them
    (`measured`), each document's rows are predicted under the one scenario that fits them best.
    """

    def __init__(self, rows: pd.DataFrame):
        rows = rows.reset_index(drop=True)
        self.n = len(rows)
        self.doc = rows.source.to_numpy() if self.n else np.array([])
        shapes, self.owner, self.scenario = ratio_shapes(rows)
        self.items = Items([work_items(s) for s in shapes]) if shapes else None
        self.work = np.array([s.batch * s.osl / s.tp for s in shapes], float)  # tokens per GPU
        self.lengths = [(s.isl, s.osl) for s in shapes[0::2]]
        self.chosen: dict[str, tuple[int, int]] = {}

    def _log_ratios(self, params: dict) -> np.ndarray:
        pre, dec = self.items.totals(params)
        per_gpu = self.work / (pre + dec)
        return np.log(per_gpu[0::2] / per_gpu[1::2])

    def __call__(self, params: dict, measured: np.ndarray | None = None) -> np.ndarray:
        if self.items is None:
            return np.full(self.n, np.nan)
        lr = self._log_ratios(params)
        out = np.full(self.n, np.nan)
        if measured is None:
            total = np.bincount(self.owner, weights=lr, minlength=self.n)
            count = np.bincount(self.owner, minlength=self.n)
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.where(count > 0, np.exp(total / np.maximum(count, 1)), np.nan)
        sq = (lr - np.log(measured[self.owner])) ** 2
        for doc in np.unique(self.doc):
            in_doc = self.doc[self.owner] == doc
            rows_in_doc = np.unique(self.owner[in_doc])
            best, best_cost = None, np.inf
            for j in np.unique(self.scenario[in_doc]):
                sel = in_doc & (self.scenario == j)
                if len(np.unique(self.owner[sel])) < len(rows_in_doc):
                    continue  # a split under which some row fits on no TP cannot be the document's
                cost = sq[sel].sum()
                if cost < best_cost:
                    best, best_cost = j, cost
            if best is None:
                continue
            sel = in_doc & (self.scenario == best)
            out[self.owner[sel]] = np.exp(lr[sel])
            self.chosen[doc] = self.lengths[int(np.flatnonzero(sel)[0])]
        return out


def predict_ratios(rows: pd.DataFrame, params: dict) -> np.ndarray:
    """Predicted per-GPU speedup of each row's format over its base (geometric mean over the scenarios)."""
    return RatioTimer(rows)(params)
