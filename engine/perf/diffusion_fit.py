"""SDXL latency: the roofline of engine/perf/diffusion.py against Model Optimizer's published SDXL table.

The table (assets/modelopt_benchmark_reference.csv, rows `diffusion_ptq_perf`) gives end-to-end latency of
INT8 and FP8 pipelines on three GPUs and their speedup over FP16; FP16 latency = latency x speedup (the
mean of the two rows' values, which agree within the speedups' rounding). Three efficiencies (16-bit and
8-bit compute, memory) are fitted by least squares on log(estimate / published). Each published cell's
error is held out: leave-one-GPU-out, the fit sees the other two GPUs only. The estimates for catalog GPUs
without a published figure use the fit on all three.

Forms tried against this protocol (2026-11-30, same op counts; median / max |error| over the 9 cells):
separate 16-bit and 8-bit compute efficiencies plus memory, 18.1% / 98.6%; one compute efficiency with
memory fixed at 0.8, 22.5% / 77.4%; one compute efficiency and a fitted memory efficiency (shipped),
16.3% / 56.5%; the same without the RTX 4090 FP16-accumulate rate (engine/perf/diffusion.py), 19.8% /
143.9%. With three GPUs the form was chosen with these held-out figures in view, so they flatter it
somewhat. The full fit puts compute at its bound (1.0) and memory near 0.37: at two 128x128 latents the
linear layers sit near the Ada GPUs' ridge point and the fit explains the time by activation traffic;
read the efficiencies as effective values, not kernel measurements. All three GPUs are Ada, so estimates
for other generations are extrapolations with no held-out check.
"""

import math
import re
from functools import lru_cache

import numpy as np
import pandas as pd

from engine.errors import TlabError
from engine.paths import asset
from engine.perf import catalog
from engine.perf.diffusion import SDXL, Efficiency, OpTable, Pipeline, pipeline_ms, supports

TABLE = "diffusion_ptq_perf"
SOURCE = ("NVIDIA TensorRT Model Optimizer, examples/benchmark.md, SDXL table (TensorRT 9.3, 1024x1024, "
          "30 steps, batch 1), shipped as assets/modelopt_benchmark_reference.csv")
PRECISIONS = ("fp16", "int8", "fp8")
PRIOR = Efficiency(c16=0.5, c8=0.5, mem=0.5)  # start of the fit; the bounds keep it physical
BOUNDS = (0.02, 1.0)
GPU_IDS = {"RTX 6000 Ada": "rtx-6000-ada", "RTX 4090": "rtx-4090", "L40S": "l40s"}


def _condition(text: str) -> dict:
    size = re.search(r"(\d+)x(\d+)", text)
    steps = re.search(r"(\d+) steps", text)
    return {"height_px": int(size.group(1)) if size else None, "width_px": int(size.group(2)) if size else None,
            "steps": int(steps.group(1)) if steps else None}


@lru_cache(maxsize=1)
def _published() -> pd.DataFrame:
    raw = pd.read_csv(asset("modelopt_benchmark_reference.csv"))
    rows = raw[(raw.table == TABLE) & raw.model.str.contains("Stable Diffusion XL") & (raw.metric == "latency")]
    if rows.empty:
        raise TlabError("The published SDXL rows are missing from assets/modelopt_benchmark_reference.csv; "
                        "reinstall the app or restore that file from the repository.")
    out = []
    for r in rows.to_dict("records"):
        sp = re.search(r"speedup ([\d.]+)x vs FP16", str(r["notes"]))
        out.append(dict(gpu=r["gpu"], gpu_id=GPU_IDS.get(r["gpu"]), precision=r["precision"].lower(),
                        latency_ms=float(r["value"]), speedup=float(sp.group(1)) if sp else math.nan,
                        condition=r["condition"], batch=int(r["batch_size"]), **_condition(r["condition"])))
    df = pd.DataFrame(out)
    # FP16 latency per GPU: latency x speedup of each low-precision row, averaged.
    fp16 = (df.assign(v=df.latency_ms * df.speedup).groupby(["gpu", "gpu_id", "condition", "batch", "height_px",
                                                              "width_px", "steps"], as_index=False)
            .agg(latency_ms=("v", "mean"), spread_ms=("v", lambda s: s.max() - s.min())))
    fp16 = fp16.assign(precision="fp16", speedup=1.0, derived=True)
    return pd.concat([df.assign(derived=False, spread_ms=0.0), fp16], ignore_index=True)


def published() -> pd.DataFrame:
    """One row per (GPU, precision): published latency (FP16 derived), published speedup vs FP16."""
    return _published().copy()


def _pipeline_for(row) -> Pipeline:
    return Pipeline(SDXL.unet, SDXL.vae, steps=row.steps, images=row.batch, height_px=row.height_px,
                    width_px=row.width_px)


_OPS: dict = {}


def _ops(pipe: Pipeline) -> dict:
    """The op lists of `pipe`, counted once (the fit re-times them many times)."""
    key = repr(pipe)  # Pipeline holds dicts, so it is not hashable; its repr names every setting
    if key not in _OPS:
        _OPS[key] = {"unet": OpTable(pipe.unet_ops()), "vae": OpTable(pipe.vae_ops())}
    return _OPS[key]


def _predict(df: pd.DataFrame, eff: Efficiency) -> np.ndarray:
    return np.array([pipeline_ms(p, catalog.gpu(r.gpu_id), r.precision, eff, _ops(p))["total_ms"]
                     for r in df.itertuples() for p in [_pipeline_for(r)]])


def fit(df: pd.DataFrame) -> Efficiency:
    """Efficiencies minimising the squared log error on the rows of `df` (published latencies): one
    compute efficiency for every tensor-core format (c16 = c8) and one memory efficiency."""
    from scipy.optimize import least_squares

    y = np.log(df.latency_ms.to_numpy())
    make = lambda x: Efficiency(math.exp(x[0]), math.exp(x[0]), math.exp(x[1]))  # noqa: E731
    sol = least_squares(lambda x: np.log(_predict(df, make(x))) - y, np.log([PRIOR.c16, PRIOR.mem]),
                        bounds=(math.log(BOUNDS[0]), math.log(BOUNDS[1])))
    return make(sol.x)


def comparison() -> tuple[pd.DataFrame, dict]:
    """Published cells with held-out estimates (leave-one-GPU-out), and the fit used for each GPU's cells."""
    cmp, fits = _comparison()
    return cmp.copy(), dict(fits)


@lru_cache(maxsize=1)
def _comparison() -> tuple[pd.DataFrame, dict]:
    pub = published()
    rows, fits = [], {}
    for gid in sorted(pub.gpu_id.unique()):
        train, test = pub[pub.gpu_id != gid], pub[pub.gpu_id == gid]
        eff = fits[gid] = fit(train)
        est = dict(zip(test.precision, _predict(test, eff)))
        for r in test.itertuples():
            rows.append(dict(gpu=r.gpu, gpu_id=gid, precision=r.precision, published_ms=r.latency_ms,
                             published_derived=r.derived, published_speedup=r.speedup, estimated_ms=est[r.precision],
                             estimated_speedup=est["fp16"] / est[r.precision]))
    out = pd.DataFrame(rows)
    out["error_pct"] = 100 * (out.estimated_ms / out.published_ms - 1)
    out["speedup_error_pct"] = 100 * (out.estimated_speedup / out.published_speedup - 1)
    order = {p: i for i, p in enumerate(PRECISIONS)}
    return out.sort_values(["gpu", "precision"], key=lambda s: s.map(order) if s.name == "precision" else s,
                           ignore_index=True), fits


@lru_cache(maxsize=1)
def full_fit() -> Efficiency:
    return fit(published())


def catalog_estimates(eff: Efficiency | None = None, pipe: Pipeline = SDXL) -> pd.DataFrame:
    """Estimated SDXL latency for every catalog GPU and precision it has tensor cores for."""
    eff = eff or full_fit()
    ops = _ops(pipe)
    rows = []
    for g in catalog.gpus().values():
        base = pipeline_ms(pipe, g, "fp16", eff, ops)
        for p in PRECISIONS:
            if not supports(g, p):
                continue
            t = base if p == "fp16" else pipeline_ms(pipe, g, p, eff, ops)
            rows.append(dict(gpu=g.name, gpu_id=g.id, precision=p, estimated_ms=t["total_ms"],
                             unet_step_ms=t["unet_step_ms"], vae_ms=t["vae_ms"],
                             estimated_speedup=base["total_ms"] / t["total_ms"]))
    return pd.DataFrame(rows)


def summary(cmp: pd.DataFrame) -> dict:
    """Median and max absolute held-out error of the latencies and of the speedups."""
    low = cmp[cmp.precision != "fp16"]
    return {"median_abs_error_pct": float(cmp.error_pct.abs().median()),
            "max_abs_error_pct": float(cmp.error_pct.abs().max()),
            "median_abs_speedup_error_pct": float(low.speedup_error_pct.abs().median()),
            "cells": int(len(cmp))}


PRECISION_LABELS = {"fp16": "FP16", "int8": "INT8", "fp8": "FP8"}


def comparison_table() -> pd.DataFrame:
    """The published cells beside their held-out estimates, for display (one row per GPU x precision)."""
    cmp, _ = comparison()
    return pd.DataFrame({
        "GPU": cmp.gpu, "Precision": cmp.precision.map(PRECISION_LABELS),
        "Published ms": cmp.published_ms.round(0),
        "Estimated ms (held out)": cmp.estimated_ms.round(0), "Error %": cmp.error_pct.round(1),
        "Published speedup": cmp.published_speedup.round(2),
        "Estimated speedup (held out)": cmp.estimated_speedup.round(2),
        "Note": np.where(cmp.published_derived, "FP16 derived: latency x speedup", "")})


def other_gpus_table() -> pd.DataFrame:
    """Estimates (fit on all three published GPUs) for the catalog GPUs the table does not cover."""
    est = catalog_estimates()
    est = est[~est.gpu_id.isin(published().gpu_id)]
    return pd.DataFrame({
        "GPU": est.gpu, "Precision": est.precision.map(PRECISION_LABELS), "Estimated ms": est.estimated_ms.round(0),
        "UNet step ms": est.unet_step_ms.round(1), "VAE decode ms": est.vae_ms.round(0),
        "Estimated speedup": est.estimated_speedup.round(2),
        "Provenance": "estimated (no published figure)"}).reset_index(drop=True)


def work_summary(pipe: Pipeline = SDXL) -> dict:
    """What one run costs, from the configs: UNet weights and TFLOPs per step, VAE decode TFLOPs."""
    from engine.perf.diffusion import totals

    unet, vae = totals(pipe.unet_ops()), totals(pipe.vae_ops())
    return {"unet_params_b": unet["weights"] / 1e9, "unet_step_tflops": unet["flops"] / 1e12,
            "vae_tflops": vae["flops"] / 1e12, "steps": pipe.steps,
            "unet_batch": 2 * pipe.images if pipe.guidance else pipe.images}
