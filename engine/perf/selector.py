"""GPU Selector logic: rank (GPU, precision, TP) options for a model and workload under latency limits.

Pure functions over the estimator; the Streamlit page only reads widgets and renders what these return.
"""

import dataclasses
import math

import numpy as np
import pandas as pd

from engine.errors import TlabError
from engine.perf import catalog
from engine.perf.estimate import Query, resolve, time_shapes
from engine.perf.memory import batch_grid  # noqa: F401  (re-exported)

# (ISL, OSL) per preset; editable on the page.
WORKLOADS = {
    "chat": (2048, 128),
    "summarization": (8192, 256),
    "code": (1024, 512),
    "long context": (32768, 256),
}
TP_OPTIONS = (1, 2, 4, 8)


def sweep(model, gpu_id: str, precision: str, tp: int, isl: int, osl: int, calibration,
          kv_cache: str = "auto", sparsity: str | None = None) -> tuple[pd.DataFrame, object]:
    """Estimates of one option over the batch grid: (frame of batch, throughput, TTFT, TPOT, ...), resolved."""
    r = resolve(Query(model, gpu_id, precision, 1, isl, osl, tp, sparsity, kv_cache))
    batches = batch_grid(r.max_batch)
    if not batches:
        return pd.DataFrame(), r
    shapes = [dataclasses.replace(r.shape, batch=b) for b in batches]
    _, pre, dec = time_shapes(shapes, calibration.params)
    name = r.shape.arch.name
    # the band of each batch is that of its regime: decode-bound (memory) or prefill-bound (compute)
    bands = {ph: calibration.band(gpu_id, precision, name, ph) for ph in ("decode", "prefill")}
    phase = ["decode" if d > p else "prefill" for p, d in zip(pre, dec)]
    band = np.array([bands[ph][0] for ph in phase])
    basis = bands["decode"][1]
    tput = [b * osl / (p + d) for b, p, d in zip(batches, pre, dec)]
    df = pd.DataFrame({
        "batch": batches, "output_tokens_per_sec": tput,
        "output_tokens_per_sec_per_gpu": [t / tp for t in tput],
        "ttft_ms": pre * 1e3, "tpot_ms": dec / max(osl - 1, 1) * 1e3 if osl > 1 else 0.0 * pre,
        "request_latency_ms": (pre + dec) * 1e3})
    df["low_per_gpu"] = df.output_tokens_per_sec_per_gpu / (1 + band)
    df["high_per_gpu"] = df.output_tokens_per_sec_per_gpu * (1 + band)
    df["uncertainty_rel"] = band
    df["calibrated_from"] = basis
    df["band_nominal"] = [calibration.band_nominal(gpu_id, name, ph) for ph in phase]
    return df, r


def rank(model, gpu_ids, precisions, isl: int, osl: int, calibration, tps=TP_OPTIONS,
         ttft_limit_ms: float | None = None, tpot_limit_ms: float | None = None,
         prices: dict | None = None) -> tuple[pd.DataFrame, dict]:
    """Every (GPU, precision, TP) option with its best batch under the limits, cheapest first.

    Returns (table, curves): the table has one row per option (also those that cannot run or do not fit,
    with the reason), `curves` maps an option label to its batch sweep for plotting.
    """
    rows, curves = [], {}
    prices = prices or {}
    for gid in gpu_ids:
        g = catalog.gpu(gid)
        price = float(prices.get(gid, g.price_per_hour))
        for prec in precisions:
            for tp in tps:
                if tp > g.max_tp:
                    continue
                label = f"{gid} · {prec} · TP{tp}"
                base = dict(option=label, gpu=gid, precision=prec, tp=tp, price_per_gpu_hour=price)
                try:
                    df, r = sweep(model, gid, prec, tp, isl, osl, calibration)
                except TlabError as e:
                    rows.append({**base, "fits": False, "why": str(e)})
                    continue
                mem = r.plan.gib()
                base.update(weights_gib=mem["weights"], capacity_gib=mem["capacity"],
                            max_batch=r.max_batch)
                if df.empty:
                    where = f"smallest TP that fits: {r.smallest_tp}" if r.smallest_tp else "no TP fits"
                    rows.append({**base, "fits": False,
                                 "why": f"weights do not fit in {mem['capacity']:.0f} GiB at TP{tp} ({where})."})
                    continue
                curves[label] = df
                ok = df
                if ttft_limit_ms:
                    ok = ok[ok.ttft_ms <= ttft_limit_ms]
                if tpot_limit_ms:
                    ok = ok[ok.tpot_ms <= tpot_limit_ms]
                if ok.empty:
                    rows.append({**base, "fits": True, "why": "no batch meets the latency limits "
                                 f"(batch 1: TTFT {df.ttft_ms.iloc[0]:.0f} ms, TPOT {df.tpot_ms.iloc[0]:.1f} ms)."})
                    continue
                best = ok.loc[ok.output_tokens_per_sec_per_gpu.idxmax()]
                cost = price * tp / 3600 / best.output_tokens_per_sec * 1e6
                rows.append({**base, "fits": True, "why": "", "batch": int(best.batch),
                             "output_tokens_per_sec_per_gpu": best.output_tokens_per_sec_per_gpu,
                             "output_tokens_per_sec": best.output_tokens_per_sec,
                             "ttft_ms": best.ttft_ms, "tpot_ms": best.tpot_ms,
                             "cost_per_million_output_tokens": cost,
                             "uncertainty_rel": best.uncertainty_rel, "band_nominal": best.band_nominal,
                             "calibrated_from": best.calibrated_from})
    table = pd.DataFrame(rows)
    if table.empty:
        return table, curves
    if "cost_per_million_output_tokens" not in table:
        table["cost_per_million_output_tokens"] = float("nan")
    table["feasible"] = table.cost_per_million_output_tokens.notna()
    table = table.sort_values(["feasible", "cost_per_million_output_tokens"], ascending=[False, True])
    table.insert(0, "rank", [i + 1 if f else None for i, f in enumerate(table.feasible)])
    table["provenance"] = "estimated"
    return table.reset_index(drop=True), curves


def best_per_precision(table: pd.DataFrame) -> pd.DataFrame:
    """The cheapest feasible option of each precision, cheapest first (for side-by-side comparison)."""
    if table.empty:
        return table
    feasible = table[table["feasible"]]
    return feasible.drop_duplicates("precision", keep="first").reset_index(drop=True)


def explain_best(table: pd.DataFrame, ttft_limit_ms=None, tpot_limit_ms=None) -> str:
    """One sentence on the best option, or why there is none."""
    feasible = table[table.get("feasible", False) == True] if not table.empty else table  # noqa: E712
    if feasible.empty:
        return ("No option meets the limits: raise the TTFT/TPOT limits, allow more TP, or add GPUs "
                "or lower-precision formats.")
    b = feasible.iloc[0]
    limits = [f"TTFT <= {ttft_limit_ms:g} ms" for _ in [0] if ttft_limit_ms] + \
             [f"TPOT <= {tpot_limit_ms:g} ms" for _ in [0] if tpot_limit_ms]
    runner = ""
    if len(feasible) > 1:
        r = feasible.iloc[1]
        ratio = r.cost_per_million_output_tokens / b.cost_per_million_output_tokens
        band = max(float(b.uncertainty_rel), float(r.uncertainty_rel))
        runner = (f"; a tie with the runner-up {r.option} within the estimates' ±{band:.0%}" if ratio - 1 <= band
                  else f", {ratio:.2f}x cheaper than the runner-up {r.option}")
    return (f"{b.gpu} with {b.precision} at TP{int(b.tp)} is the cheapest option"
            + (f" under {' and '.join(limits)}" if limits else "")
            + f": about ${b.cost_per_million_output_tokens:.2f} per million output tokens at batch "
            f"{int(b.batch)} ({b.output_tokens_per_sec_per_gpu:,.0f} tokens/s per GPU, +/-"
            f"{b.uncertainty_rel:.0%}){runner}.")


def memory_rows(model, options: pd.DataFrame, isl: int, osl: int) -> pd.DataFrame:
    """Memory plan per option at its chosen batch (batch 1 where none was chosen)."""
    out = []
    for r in options.itertuples():
        batch = getattr(r, "batch", None)
        batch = 1 if batch is None or (isinstance(batch, float) and math.isnan(batch)) else int(batch)
        try:
            res = resolve(Query(model, r.gpu, r.precision, batch, isl, osl, int(r.tp)))
        except TlabError:
            continue
        out.append({"option": r.option, "batch": batch, **res.plan.gib()})
    return pd.DataFrame(out)


def overlay_points(model_id: str, options: pd.DataFrame, isl: int, osl: int, store_points=None) -> pd.DataFrame:
    """Published and the user's measured points for the same model, GPU, precision, TP and lengths."""
    from engine.perf.calibrate import published_points

    pts = published_points()
    if store_points is not None and len(store_points):
        pts = pd.concat([pts, store_points], ignore_index=True)
    pts = pts[(pts.model_id == model_id) & (pts.isl == isl) & (pts.osl == osl)]
    keep = []
    for r in options.itertuples():
        m = pts[(pts.gpu_id == r.gpu) & (pts.precision == r.precision) & (pts.tp == r.tp)]
        if len(m):
            keep.append(m.assign(option=r.option))
    if not keep:
        return pd.DataFrame(columns=["option", "batch", "output_tokens_per_sec_per_gpu", "provenance", "source"])
    df = pd.concat(keep, ignore_index=True)
    df["output_tokens_per_sec_per_gpu"] = df.output_tokens_per_sec / df.tp
    return df


def band_label(table: pd.DataFrame) -> str:
    """Column header of the band: with its nominal level when the band is a calibrated interval."""
    nom = table.get("band_nominal", pd.Series(dtype=float)).dropna()
    return f"± band ({float(nom.iloc[0]):.0%})" if len(nom) else "± band"


def band_note(table: pd.DataFrame) -> str:
    nom = table.get("band_nominal", pd.Series(dtype=float)).dropna()
    if len(nom):
        return (f"the band is a stated {float(nom.iloc[0]):.0%} interval: its width is the error of held-out "
                "published points in the same regime (GPU seen or not, model family seen or not, decode- or "
                "prefill-bound), so about that share of real runs fall inside it.")
    return "the band is the calibration's error on similar measured points (a rule of thumb, not an interval)."


def focus_option(table: pd.DataFrame, gpus: list) -> dict:
    """The option the parity picture is about: the best feasible one, else the first candidate GPU."""
    feas = table[table["feasible"]] if "feasible" in table else table.iloc[0:0]
    if len(feas):
        top = feas.iloc[0]
        nom = top.get("band_nominal")
        return {"gpu": top.gpu, "band_rel": float(top.uncertainty_rel),
                "band_nominal": None if nom is None or pd.isna(nom) else float(nom)}
    return {"gpu": gpus[0] if gpus else None, "band_rel": None, "band_nominal": None}


def measured_parity(store_pts: pd.DataFrame, calibration) -> pd.DataFrame:
    """The user's measured points as (value, predicted, source) for the parity picture."""
    from engine.perf import calibrate

    if store_pts is None or not len(store_pts):
        return pd.DataFrame(columns=["value", "predicted", "source"])
    pts = store_pts.reset_index(drop=True)
    return pd.DataFrame({"value": pts.output_tokens_per_sec, "predicted": calibrate.predict(pts, calibration.params),
                         "source": pts.source}).dropna()
