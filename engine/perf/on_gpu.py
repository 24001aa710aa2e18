"""Estimated speedup of stored results on a catalog GPU: the speed axis for a GPU the user will deploy
on, beside the accuracy they measured here.

Each recipe's speedup is the estimator's output throughput for it over the BF16 baseline's, on the
same GPU, tensor-parallel size and workload. The band is the recipe estimate's own band, scaled the
same way. Every number here is "estimated" and says how; a recipe the GPU cannot run, or a model the
estimator has no architecture for, gets the reason instead of a number.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine import registry
from engine.errors import TlabError


@dataclass(frozen=True)
class GpuWorkload:
    gpu: str
    batch: int = 8
    isl: int = 1024
    osl: int = 128
    tp: int = 1

    @property
    def text(self) -> str:
        return f"{self.gpu}, TP {self.tp}, batch {self.batch}, ISL {self.isl} / OSL {self.osl}"


def model_id(name: str) -> str:
    """The model a result names, as the estimator's catalog knows it: the bundled model's display name
    ('… (bundled GGUF Q4_1)') becomes its Hugging Face id."""
    return str(name).split(" (", 1)[0].strip()


def estimated_speedups(frame: pd.DataFrame, where: GpuWorkload, calibration=None) -> pd.DataFrame:
    """`frame` (results, engine.plots.chart_frame) with the speed columns replaced by estimates on
    `where`: y_speedup, y_low, y_high, speed_kind = "estimated", speed_note (how, or why none)."""
    from engine.perf import calibrate
    from engine.perf.estimate import Query, estimate

    cal = calibration or calibrate.default_calibration()
    out = frame.copy()
    keys = ["model", "precision", "sparsity", "kv_cache"]
    found: dict[tuple, tuple[float, float, float, str]] = {}
    for key in out[keys].drop_duplicates().itertuples(index=False, name=None):
        found[key] = _one(key, where, cal, Query, estimate)
    values = [found[k] for k in out[keys].itertuples(index=False, name=None)]
    out["y_speedup"] = [v[0] for v in values]
    out["y_low"] = [v[1] for v in values]
    out["y_high"] = [v[2] for v in values]
    out["speed_note"] = [v[3] for v in values]
    out["speed_kind"] = "estimated"
    out["provenance"] = "accuracy measured, speed estimated"
    out["device"] = where.gpu
    out["backend"] = "estimate (calibrated roofline of TensorRT-LLM)"
    return out


def _one(key: tuple, where: GpuWorkload, cal, Query, estimate) -> tuple[float, float, float, str]:  # noqa: N803
    name, precision, sparsity, kv_cache = key
    nan = float("nan")
    try:
        pattern = registry.sparsity_pattern(sparsity if isinstance(sparsity, str) else None)
        kv = kv_cache if isinstance(kv_cache, str) else "auto"
        query = lambda p, s, k: Query(model_id(name), where.gpu, p, where.batch, where.isl, where.osl,  # noqa: E731
                                      where.tp, s, k)
        base = estimate(query("bf16", None, "auto"), cal)
        est = estimate(query(precision, pattern, kv), cal)
    except TlabError as exc:
        return nan, nan, nan, f"no estimate: {exc}"
    if not base.output_tokens_per_sec or not est.output_tokens_per_sec:
        return nan, nan, nan, (f"no estimate: does not fit on {where.tp} x {where.gpu} at batch {where.batch} "
                               f"(largest batch that fits: {est.max_batch_that_fits}); raise TP or lower the batch")
    ratio = est.output_tokens_per_sec / base.output_tokens_per_sec
    if precision in registry.BASELINES and pattern is None and kv == "auto":
        return 1.0, 1.0, 1.0, f"the baseline itself on {where.text}"  # 1x by definition: no band
    scale = ratio / est.output_tokens_per_sec
    note = (f"estimated on {where.text}: output tokens/s vs the BF16 baseline's, calibrated roofline "
            f"({est.calibrated_from}); band = the recipe estimate's band")
    return ratio, est.output_tokens_per_sec_low * scale, est.output_tokens_per_sec_high * scale, note


def notes(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Why rows have no estimate: reason -> recipe labels."""
    out: dict[str, list[str]] = {}
    missing = frame[np.isnan(frame["y_speedup"].astype(float))]
    for recipe, note in zip(missing.get("recipe", missing["precision"]), missing["speed_note"]):
        out.setdefault(str(note), []).append(str(recipe))
    return out
