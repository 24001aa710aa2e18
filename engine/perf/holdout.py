"""Leave-one-group-out checks of the estimator: how it does on a GPU, model family, TensorRT-LLM version
or source document the fit never saw.

Each protocol holds out one group at a time (plus any row of another group that repeats a held-out row
exactly: a table copied into a blog must not leak the answer), fits on the rest and predicts the held-out
rows: fixed-batch output throughput (the calibration's own kind of point) and time to first token (the
published first-token latencies, which the calibration never uses). The residuals are what the
uncertainty band is built from (engine/perf/bands.py) and what the parity picture draws.
"""

import re

import numpy as np
import pandas as pd

from engine.perf import calibrate
from engine.perf.bands import model_family
from engine.perf.model import Items, Shape, work_items

PROTOCOLS = {"source": "leave-one-source-out", "gpu_id": "leave-one-GPU-out",
             "family": "leave-one-model-family-out", "version": "leave-one-TensorRT-LLM-version-out"}
_KEY = ["gpu_id", "model_id", "precision", "batch", "isl", "osl", "tp", "value"]
TTFT_METRIC = "first_token_latency_ms"  # static-batch '1st token latency'; online-serving TTFT is not estimable


def trtllm_version(engine_version) -> str | None:
    """'nvidia-modelopt v0.21.1 + TensorRT-LLM v0.15 (trtllm-bench)' -> '0.15'; None when not stated."""
    m = re.search(r"TensorRT-LLM v(\d+\.\d+)", str(engine_version))
    return m.group(1) if m else None


def throughput_points() -> pd.DataFrame:
    """The calibration's published points with the groups the protocols hold out."""
    from engine.reference import fixed_batch_throughput

    f = fixed_batch_throughput()
    f = f[f.estimable].reset_index(drop=True)
    pts = calibrate.published_points()  # built row by row from the same frame, same order
    return pts.assign(family=pts.model_id.map(model_family), version=f.engine_version.map(trtllm_version).values,
                      value=pts.output_tokens_per_sec, metric="throughput")


def ttft_points() -> pd.DataFrame:
    """Published first-token latencies that state what an estimate needs (model, GPU, TP, ISL, precision)."""
    from engine.reference import published_frame

    d = published_frame()
    d = d[(d.metric == TTFT_METRIC) & d.model_id.notna() & d.gpu_id.notna() & d.tp.notna() & d.isl.notna()
          & d.precision.notna()]
    batch = d.batch.fillna(1).astype(int)
    return pd.DataFrame({
        "gpu_id": d.gpu_id, "model_id": d.model_id, "precision": d.precision,
        "sparsity": d.sparsity.fillna("none"), "batch": batch, "isl": d.isl.astype(int), "osl": 1,
        "tp": d.tp.astype(int), "value": d.value.astype(float), "source": d.source_label,
        "provenance": "published",
        "harness": np.where(d.engine_version.str.contains("trtllm-bench"), "trtllm-bench", "static"),
        "family": d.model_id.map(model_family), "version": d.engine_version.map(trtllm_version),
        "metric": "ttft"}).reset_index(drop=True)


def predict_ttft_ms(points: pd.DataFrame, params: dict) -> np.ndarray:
    """Prefill time (ms) of each point: the first token comes out of the prefill pass."""
    from engine.perf import arch as arch_mod
    from engine.perf import catalog
    from engine.perf.formats import kv_bytes

    out = np.full(len(points), np.nan)
    shapes, owner = [], []
    for i, r in enumerate(points.to_dict("records")):
        try:
            a, g = arch_mod.resolve(r["model_id"]), catalog.gpu(r["gpu_id"])
        except Exception:
            continue
        shapes.append(Shape(a, g, r["precision"], int(r["tp"]), int(r["batch"]), int(r["isl"]), 1,
                            kv_bytes(r["precision"], "auto", g.peak("fp8") is not None),
                            r.get("sparsity", "none") not in ("none", None), r.get("harness") or "static"))
        owner.append(i)
    if shapes:
        pre, _ = Items([work_items(s) for s in shapes]).totals(params)
        out[owner] = pre * 1e3
    return out


def decode_share(points: pd.DataFrame, params: dict) -> np.ndarray:
    """Share of each throughput point's time spent in decode: > 0.5 is the memory-bound regime."""
    shapes, owner = calibrate.shapes_of(points.reset_index(drop=True))
    share = np.full(len(points), np.nan)
    if shapes:
        pre, dec = Items([work_items(s) for s in shapes]).totals(params)
        share[owner] = dec / (pre + dec)
    return share


def _stated(cal, rows: pd.DataFrame) -> np.ndarray:
    """The band (log half-width) the estimator states for each row, calibrated as `cal` is."""
    rel = [cal.band(r.gpu_id, r.precision, r.model_id, "ttft" if r.metric == "ttft" else r.phase)[0]
           for r in rows.itertuples()]
    return np.log1p(np.array(rel, float))


def leave_one_group_out(col: str, tput: pd.DataFrame | None = None, ttft: pd.DataFrame | None = None,
                        fit=calibrate.fit_cached) -> pd.DataFrame:
    """Held-out predictions of every throughput and TTFT point under the protocol that holds out `col`.

    Rows whose group is unknown (no TensorRT-LLM version stated) are never held out: they stay in every
    fit. A TTFT group with no throughput point is predicted by the fit on all throughput points (the fit
    never uses TTFT, so it is held out all the same). Columns added: protocol, predicted, phase.
    """
    tput = throughput_points() if tput is None else tput
    ttft = ttft_points() if ttft is None else ttft
    keys = tput[_KEY].astype(str).agg("|".join, axis=1)
    parts = []
    groups = set(tput[col].dropna()) | set(ttft[col].dropna())
    for grp in sorted(groups, key=str):
        held = (tput[col] == grp).to_numpy()
        train = ~(held | keys.isin(set(keys[held])).to_numpy())
        cal = fit(tput[train].reset_index(drop=True))
        params = cal.params
        seen = lambda d: d.assign(gpu_seen=d.gpu_id.isin(set(tput.gpu_id[train])),  # noqa: E731
                                  family_seen=d.family.isin(set(tput.family[train])))
        t = tput[held].reset_index(drop=True)
        if len(t):
            share = decode_share(t, params)
            t = t.assign(predicted=calibrate.predict(t, params), phase=np.where(share > 0.5, "decode", "prefill"))
            t = seen(t)
            parts.append(t.assign(stated_band=_stated(cal, t), held_out=grp))
        f = ttft[ttft[col] == grp].reset_index(drop=True)
        if len(f):
            f = f.assign(predicted=predict_ttft_ms(f, params), phase="prefill")
            f = seen(f)
            parts.append(f.assign(stated_band=_stated(cal, f), held_out=grp))
    out = pd.concat(parts, ignore_index=True)
    out["protocol"] = col
    out["log_ratio"] = np.log(out.predicted / out.value)
    return out


def all_protocols(fit=calibrate.fit_cached) -> pd.DataFrame:
    """Held-out residuals of every protocol, one frame (a point appears once per protocol)."""
    tput, ttft = throughput_points(), ttft_points()
    return pd.concat([leave_one_group_out(c, tput, ttft, fit) for c in PROTOCOLS], ignore_index=True)


def summary(res: pd.DataFrame, band=None) -> pd.DataFrame:
    """Median / p90 absolute error per protocol and metric; band coverage when `band` (a Series of
    log half-widths aligned with res) is given."""
    e = np.abs(res.predicted / res.value - 1)
    df = res.assign(err=e)
    if band is not None:
        df = df.assign(inside=np.abs(res.log_ratio) <= band)
    rows = []
    for (proto, metric), g in df.groupby(["protocol", "metric"], sort=False):
        g = g.dropna(subset=["err"])
        row = dict(protocol=proto, metric=metric, n=len(g), median=g.err.median(), p90=g.err.quantile(0.9),
                   max=g.err.max())
        if band is not None:
            row["coverage"] = g.inside.mean()
        rows.append(row)
    return pd.DataFrame(rows)


def median_errors(res: pd.DataFrame, gpu_id: str | None, family: str | None,
                  metric: str = "throughput") -> dict:
    """{label: (median |error|, n)} of the held-out points of this GPU (GPU held out) and this model family
    (family held out): what the parity picture highlights."""
    d = res[(res.metric == metric) & res.predicted.notna()]
    e = np.abs(d.predicted / d.value - 1)
    out = {}
    for label, sel in ((f"GPU {gpu_id} unseen", (d.protocol == "gpu_id") & (d.gpu_id == gpu_id)),
                       (f"family {family} unseen", (d.protocol == "family") & (d.family == family)),
                       ("all protocols", d.protocol.notna())):
        out[label] = (float(e[sel].median()) if sel.any() else float("nan"), int(sel.sum()))
    return out
