"""Fit the efficiency parameters to measured points: published ones shipped in assets/ and the
user's own results store. A user who benchmarks on their GPU improves estimates for it.

The fit is least squares on log(predicted / measured) with each parameter softly held to its
spec-sheet prior (engine/perf/params.py), so parameters no point informs stay at the prior.
"""

import dataclasses
import hashlib
import json
import math
import threading
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from engine.paths import cache_dir
from engine.perf import arch as arch_mod
from engine.perf import catalog
from engine.perf.formats import kv_bytes
from engine.perf.model import Items, Shape, param_group, work_items
from engine.perf.params import FREE, PRIORS, prior_params
from engine.perf.ratios import RATIO_COLUMNS, RATIO_WEIGHT, RatioTimer

POINT_COLUMNS = ["gpu_id", "model_id", "precision", "sparsity", "batch", "isl", "osl", "tp",
                 "output_tokens_per_sec", "source", "provenance", "harness", "batch_mode"]
MODEL_VERSION = "roofline-v2"  # cached fits are also keyed by the code and catalogs (see _cache_key)

# The plain uncalibrated roofline peer tools use: full bandwidth and peak, hard max, no overheads.
PLAIN_ROOFLINE = {**{k: 1.0 for k in PRIORS}, "knee_p": 100.0, "layer_us": 0.0, "ar_us": 0.0, "sm_gb_s": 1e12,
                  "dq_int4_awq": 1e9, "dqs_int4_awq": 1e9, "act_mem": 1e9,
                  "w0_bf16": 0.0, "w0_8bit": 0.0, "w0_fp4": 0.0}
PLAIN_ROOFLINE = {k: v for k, v in PLAIN_ROOFLINE.items() if not k.startswith("hs_")}


def published_points(include_max: bool = False) -> pd.DataFrame:
    """Output-throughput rows of the shipped published measurements that can be estimated: fixed-batch
    rows, plus (include_max) max-throughput rows whose batch the benchmark chose (batch_mode "max").

    The shipped calibration leaves the max-throughput rows out: fitted together with the fixed-batch
    rows they made the leave-one-source-out error worse (one TensorRT-LLM 0.17 document disagreeing with
    the 0.15 Model Optimizer table run by the same harness), so they serve as an out-of-source check.
    """
    from engine.reference import fixed_batch_throughput, max_throughput

    f = fixed_batch_throughput()
    f = f[f.estimable].assign(batch_mode="fixed")
    if include_max:
        m = max_throughput()
        f = pd.concat([f, m[m.estimable].assign(batch_mode="max", batch=0)], ignore_index=True)
    out = pd.DataFrame({
        "gpu_id": f.gpu_id, "model_id": f.model_id, "precision": f.precision,
        "sparsity": f.sparsity.fillna("none"), "batch": f.batch.astype(int), "isl": f.isl.astype(int),
        "osl": f.osl.astype(int), "tp": f.tp.astype(int), "output_tokens_per_sec": f.output_tokens_per_sec,
        "source": f.source_label, "provenance": "published",
        "harness": np.where(f.engine_version.str.contains("trtllm-bench"), "trtllm-bench", "static"),
        "batch_mode": f.batch_mode})
    return out.reset_index(drop=True)


GPU_NAME_PATTERNS = [  # (substring tests on an upper-cased device name, catalog id); first match wins
    (("GH200",), "gh200"), (("GB200",), "gb200"), (("B200",), "b200"), (("H200",), "h200"),
    (("H100", "PCIE"), "h100-pcie"), (("H100",), "h100-sxm"), (("A100", "PCIE"), "a100-pcie-80gb"),
    (("A100",), "a100-sxm-80gb"), (("L40S",), "l40s"), (("A10G",), "a10g"), (("4090",), "rtx-4090"),
    (("RTX PRO 6000",), "rtx-pro-6000-blackwell"), (("RTX 6000 ADA",), "rtx-6000-ada"), (("L4",), "l4"),
]


def gpu_id_from_name(name) -> str | None:
    """Catalog id of a device name as nvidia-smi / torch report it ('NVIDIA H100 80GB HBM3' -> h100-sxm)."""
    if not isinstance(name, str) or not name.strip():
        return None
    if name in catalog.gpus():
        return name
    up = name.upper().removeprefix("CUDA: ")
    if ("A100" in up and "40GB" in up) or ("L40" in up and "L40S" not in up):
        return None  # not in the catalog (A100 40GB, L40): a neighbour's specs would mislead the fit
    for needles, gid in GPU_NAME_PATTERNS:
        if all(n in up for n in needles):
            return gid
    return None


def _first(row: dict, *keys):
    for k in keys:
        v = row.get(k)
        if v is not None and not (isinstance(v, float) and math.isnan(v)) and v != "":
            return v
    return None


def records_to_points(results) -> pd.DataFrame:
    """Calibration points from the store's results (`open_store().list_results()`).

    Each TensorRT-LLM measurement in a result's speed provenance (one per batch size) with a catalog
    GPU and an output-throughput number becomes a point. Other backends (PyTorch eager, CPU) measure
    a different engine and are skipped, so they cannot pull TensorRT-LLM efficiencies.
    """
    rows = []
    for res in results or []:
        speed = res.part("speed")
        if speed.get("kind") != "measured":
            continue
        workload = res.spec.get("workload") if isinstance(res.spec.get("workload"), dict) else {}
        tp = int(workload.get("tp") or res.spec.get("tp") or 1)
        for m in res.measurements:
            if m.backend != "tensorrt_llm":
                continue
            dev = m.provenance.get("device") or speed.get("device") or res.device
            name = dev.get("name") if isinstance(dev, dict) else dev
            if isinstance(name, str) and name.startswith("cuda: "):
                name = name[len("cuda: "):]
            gid = gpu_id_from_name(name)
            tput = m.metrics.get("output_tokens_per_sec")
            if gid is None or tput is None or not m.batch_size or not m.input_len:
                continue
            sp = m.sparsity or res.sparsity or "none"
            rows.append(dict(gpu_id=gid, model_id=res.model, precision=m.precision or res.precision,
                             sparsity="none" if sp in ("none", "dense") else "2:4",
                             batch=int(m.batch_size), isl=int(m.input_len), osl=int(m.output_len),
                             tp=tp, output_tokens_per_sec=float(tput), source=f"your store ({gid})",
                             provenance="measured", harness="trtllm-bench", batch_mode="fixed"))
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


def store_points(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Measured GPU speed results of the user's store as calibration points.

    With no argument it opens the store and reads its records (`records_to_points`); it returns an empty
    frame when there is no store or nothing usable in it. A plain frame of points (columns gpu or
    gpu_id or device, model, precision, batch, isl, osl, tp, output_tokens_per_sec) is accepted too,
    so any table of measurements can calibrate. Rows without a catalog GPU are skipped: a CPU run says
    nothing about GPUs.
    """
    if frame is None:
        try:
            from engine.store import open_store

            return records_to_points(open_store().list_results())
        except Exception:  # no store yet, or one this version cannot read: nothing to learn from
            return pd.DataFrame(columns=POINT_COLUMNS)
    if len(frame) == 0:
        return pd.DataFrame(columns=POINT_COLUMNS)
    rows = []
    for r in frame.to_dict("records"):
        if str(_first(r, "provenance") or "measured").split(":")[0].strip().lower() != "measured":
            continue
        gid = gpu_id_from_name(_first(r, "gpu_id", "gpu", "gpu_name", "device_name", "device"))
        tput = _first(r, "output_tokens_per_sec", "output_tok_s")
        batch, isl, osl = _first(r, "batch", "batch_size"), _first(r, "isl", "input_len"), \
            _first(r, "osl", "output_len")
        if gid is None or tput is None or batch is None or isl is None or osl is None:
            continue
        sp = _first(r, "sparsity") or "none"
        rows.append(dict(gpu_id=gid, model_id=_first(r, "model_id", "model"),
                         precision=_first(r, "precision") or "bf16",
                         sparsity="none" if sp in ("none", "dense") else "2:4", batch=int(batch),
                         isl=int(isl), osl=int(osl), tp=int(_first(r, "tp") or 1),
                         output_tokens_per_sec=float(tput), source=f"your store ({gid})",
                         provenance="measured", harness="trtllm-bench", batch_mode="fixed"))
    return pd.DataFrame(rows, columns=POINT_COLUMNS)


MAX_GRID_TAIL = 3  # batches tried for a "max" point: the largest few of the batch grid that fits
MAX_POINT_WEIGHT = 0.5  # a max-throughput row leaves the batch to the benchmark: it counts half


def shapes_of(points: pd.DataFrame) -> tuple[list[Shape], np.ndarray]:
    """Shapes to time for the points, and for each shape the row position of its point.

    A fixed-batch point is one shape. A max-throughput point (batch_mode "max": the benchmark chose the
    batch) is the last few batches of the grid that fits in memory; its prediction is the best of them.
    Points whose model or GPU does not resolve, or that do not fit at all, get no shape.
    """
    from engine.perf import memory
    from engine.perf.memory import batch_grid

    shapes, owner = [], []
    modes = points["batch_mode"] if "batch_mode" in points else pd.Series("fixed", index=points.index)
    for i, (r, mode) in enumerate(zip(points.to_dict("records"), modes)):
        try:
            a = arch_mod.resolve(r["model_id"])
            g = catalog.gpu(r["gpu_id"])
        except Exception:
            continue
        kvb = kv_bytes(r["precision"], "auto", g.peak("fp8") is not None)
        sparse = r.get("sparsity", "none") not in ("none", None)
        sh = Shape(a, g, r["precision"], int(r["tp"]), max(int(r["batch"]), 1), int(r["isl"]), int(r["osl"]),
                   kvb, sparse, r.get("harness") or "trtllm-bench")
        if mode == "max":
            mb = memory.max_batch(a, g, sh.precision, sh.sparse, sh.tp, sh.isl, sh.osl, kvb)
            for b in batch_grid(mb)[-MAX_GRID_TAIL:]:
                shapes.append(dataclasses.replace(sh, batch=b))
                owner.append(i)
        else:
            shapes.append(sh)
            owner.append(i)
    return shapes, np.array(owner, dtype=int)


class _Timer:
    """Predicted tokens/s per point for any parameters (the work items are built once)."""

    def __init__(self, points: pd.DataFrame):
        self.n = len(points)
        shapes, self.owner = shapes_of(points)
        self.items = Items([work_items(s) for s in shapes]) if shapes else None
        self.work = np.array([s.batch * s.osl for s in shapes], float)

    def __call__(self, params: dict) -> np.ndarray:
        out = np.full(self.n, np.nan)
        if self.items is None:
            return out
        pre, dec = self.items.totals(params)
        best = np.full(self.n, -np.inf)
        np.maximum.at(best, self.owner, self.work / (pre + dec))
        return np.where(np.isfinite(best), best, out)


def predict(points: pd.DataFrame, params: dict) -> np.ndarray:
    """Predicted output tokens/s (total over TP) per point; NaN where it does not resolve or fit."""
    return _Timer(points.reset_index(drop=True))(params)


@dataclass
class Calibration:
    params: dict
    points: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=POINT_COLUMNS))
    # published speedup ratios the fit also used (engine/perf/ratios.py), with their `predicted` column
    ratios: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RATIO_COLUMNS))

    @property
    def n(self) -> int:
        return len(self.points)

    def summary(self) -> str:
        if self.n == 0:
            return "spec sheet only: efficiencies are priors, no measured points"
        by = self.points.provenance.value_counts().to_dict()
        parts = [f"{v} {k}" for k, v in by.items()]
        ratios = (f" and {len(self.ratios)} published speedup ratios from {self.ratios.source.nunique()} "
                  "sources" if len(self.ratios) else "")
        return (f"fit to {self.n} measured points from {self.points.source.nunique()} sources "
                f"({', '.join(parts)}) on {', '.join(sorted(self.points.gpu_id.unique()))}{ratios}")

    def _errors(self, sel) -> np.ndarray:
        p = self.points[sel]
        return np.abs(p.predicted / p.output_tokens_per_sec - 1).to_numpy()

    def _in_sample(self, gpu_id: str, precision: str) -> tuple[float, str, str]:
        """The old band, from the fit's in-sample errors: used only when no held-out residuals ship."""
        on_gpu = self.points.gpu_id == gpu_id
        grp = self.points.precision.map(param_group) == param_group(precision)
        overall = float(np.percentile(self._errors(slice(None)), 90))
        n_gpu, n_both = int(on_gpu.sum()), int((on_gpu & grp).sum())
        if n_both >= 3:
            e = float(np.percentile(self._errors(on_gpu & grp), 90))
            return (max(e, 0.05), f"{n_gpu} measured points on {gpu_id} ({n_both} in {precision})",
                    "90th percentile of the fit's error on this GPU and precision (floor 5%)")
        if n_gpu >= 3:
            e = float(np.percentile(self._errors(on_gpu), 90))
            return (max(1.5 * e, 0.10), (f"{n_gpu} measured points on {gpu_id}, none in {precision}; "
                                         f"{precision} efficiency from {int(grp.sum())} points on other GPUs"),
                    "1.5 x the 90th percentile of the fit's error on this GPU (floor 10%)")
        return (max(2 * overall, 0.25), (f"spec sheet only for {gpu_id}; efficiencies fit to {self.n} "
                                         f"measured points on other GPUs"),
                "2 x the fit's overall 90th-percentile error, since this GPU has no measurement (floor 25%)")

    def _held_out(self, gpu_id: str, model_id, phase) -> tuple[float, str] | None:
        """(band, how) from the shipped held-out residuals of this query's regime (engine/perf/bands.py)."""
        from engine.perf import bands

        if model_id is None:
            return None
        fams = set(self.points.model_id.map(bands.model_family))
        gpu_seen, fam_seen = gpu_id in set(self.points.gpu_id), bands.model_family(model_id) in fams
        moe = bands.is_moe(model_id)
        got = [bands.band(gpu_seen, fam_seen, q, moe) for q in ([phase] if phase else ["decode", "prefill"])]
        if not all(got):
            return None
        b = max(got, key=lambda x: x[0])
        return b[0], (f"{bands.NOMINAL:.0%} interval of the '{b[1]}' regime ({b[2]}; leave-one-group-out "
                      f"conformal quantile)")

    def band(self, gpu_id: str, precision: str, model_id=None, phase=None) -> tuple[float, str]:
        """(relative half-width of the uncertainty band, what the estimate was calibrated from).

        With `model_id` (and `phase`: "decode", "prefill" or "ttft"), the band is the stated nominal
        interval (bands.NOMINAL) of the query's regime; without, the fit's in-sample error."""
        if self.n == 0:
            return 0.5, "spec sheet only (no measured points)"
        rel, basis, _ = self._in_sample(gpu_id, precision)
        held = self._held_out(gpu_id, model_id, phase)
        return (held[0], basis) if held else (rel, basis)

    def band_how(self, gpu_id: str, precision: str, model_id=None, phase=None) -> str:
        if self.n == 0:
            return "no calibration data: +/-50% by convention"
        held = self._held_out(gpu_id, model_id, phase)
        return held[1] if held else self._in_sample(gpu_id, precision)[2]

    def band_nominal(self, gpu_id: str, model_id=None, phase=None) -> float | None:
        """The stated coverage of the band (None: the band is a rule of thumb, not a calibrated interval)."""
        from engine.perf import bands

        return bands.NOMINAL if self.n and self._held_out(gpu_id, model_id, phase) else None


def fit(points: pd.DataFrame, priors: dict = PRIORS, ratios: pd.DataFrame | None = None) -> Calibration:
    """Least-squares fit of the free parameters to `points` (columns POINT_COLUMNS) and, when given,
    to published speedup ratios (columns RATIO_COLUMNS, see engine/perf/ratios.py)."""
    from scipy.optimize import least_squares

    points = points.reset_index(drop=True)
    timer = _Timer(points)
    ok = ~np.isnan(timer(prior_params()))
    points = points[ok].reset_index(drop=True)
    base = prior_params()
    ratios = pd.DataFrame(columns=RATIO_COLUMNS) if ratios is None else ratios.reset_index(drop=True)
    if len(ratios):
        ratios = ratios[~np.isnan(RatioTimer(ratios)(base, ratios.speedup_per_gpu.to_numpy(float)))]
        ratios = ratios.reset_index(drop=True)
    if points.empty and ratios.empty:
        return Calibration(base)
    timer = _Timer(points)
    rtimer = RatioTimer(ratios)
    r_measured = ratios.speedup_per_gpu.to_numpy(float)
    measured = points.output_tokens_per_sec.to_numpy(float)
    weight = np.where(points.get("batch_mode", pd.Series("fixed", index=points.index)) == "max",
                      MAX_POINT_WEIGHT, 1.0)
    free = [k for k in FREE if k in priors]
    x0 = np.log([priors[k][0] for k in free])
    lo = np.log([priors[k][2] for k in free])
    hi = np.log([priors[k][3] for k in free])
    sig = np.array([priors[k][1] for k in free])
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

    def unpack(x):
        return {**base, **dict(zip(free, np.exp(x)))}

    def residuals(x):
        p = unpack(x)
        r_data = weight * np.log(timer(p) / measured)
        r_ratio = RATIO_WEIGHT * np.log(rtimer(p, r_measured) / r_measured) if len(ratios) else np.empty(0)
        return np.concatenate([r_data, r_ratio, (x - x0) / sig])

    # soft_l1: a source that is off for reasons outside the model (an old engine, a mislabeled table)
    # pulls less than a squared error would let it.
    res = least_squares(residuals, x0, bounds=(lo, hi), method="trf", loss="soft_l1", f_scale=0.15,
                        max_nfev=500)
    params = unpack(res.x)
    return Calibration(params, points.assign(predicted=timer(params)),
                       ratios.assign(predicted=rtimer(params, r_measured),
                                     lengths=ratios.source.map(lambda d: "ISL/OSL %d/%d" % rtimer.chosen[d]
                                                               if d in rtimer.chosen else ""))
                       if len(ratios) else ratios)


def _cache_key(points: pd.DataFrame, ratios: pd.DataFrame | None = None) -> str:
    """Changes whenever the points, the priors, the model code or the catalogs change."""
    from pathlib import Path

    from engine.paths import asset

    h = hashlib.sha256()
    h.update(MODEL_VERSION.encode())
    here = Path(__file__).parent
    for f in (here / "model.py", here / "params.py", here / "formats.py", here / "arch.py",
              here / "calibrate.py", here / "ratios.py", here / "memory.py", here / "catalog.py", asset("gpus.csv"),
              asset("architectures.csv")):
        h.update(f.read_bytes())
    h.update(repr(sorted(PRIORS.items())).encode())
    h.update(points[POINT_COLUMNS].to_csv(index=False).encode())
    if ratios is not None:
        h.update(ratios[RATIO_COLUMNS].to_csv(index=False).encode())
    return h.hexdigest()[:16]


def fit_cached(points: pd.DataFrame, ratios: pd.DataFrame | None = None) -> Calibration:
    """`fit`, remembered on disk in the cache folder (engine.paths.cache_dir), keyed by the points and the model version."""
    key = _cache_key(points, ratios)
    path = cache_dir() / f"perf_calibration_{key}.json"
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            return Calibration(saved["params"], pd.DataFrame(saved["points"]),
                               pd.DataFrame(saved["ratios"], columns=RATIO_COLUMNS + ["predicted", "lengths"]))
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is refit
    cal = fit(points, ratios=ratios)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"params": cal.params, "points": cal.points.to_dict("records"),
                                    "ratios": cal.ratios.to_dict("records")}))
    except OSError:
        pass  # read-only home: fit again next time
    return cal


_FITS: dict[str, Calibration] = {}  # in-process memo of fit_cached, by the points' content
# One fit at a time: a web page re-run while a fit is under way waits for it and reuses it, instead of
# starting a second fit of the same points beside it (each takes ~20 s of CPU on 2 cores).
_FIT_LOCK = threading.Lock()


def default_calibration(store: pd.DataFrame | None = None, include_store: bool = True) -> Calibration:
    """The shipped published points plus the user's measured store results.

    `store`: calibration points already (columns POINT_COLUMNS), any frame `store_points` accepts, or
    None to read the user's store. Fits are memoized in-process and on disk, so only new points refit.
    """
    if not include_store:
        sp = pd.DataFrame(columns=POINT_COLUMNS)
    elif store is None:
        sp = store_points()
    elif set(POINT_COLUMNS) <= set(store.columns):
        sp = store[POINT_COLUMNS]
    else:
        sp = store_points(store)
    pts = pd.concat([published_points(), sp], ignore_index=True) if len(sp) else published_points()
    # The published speedup ratios (engine/perf/ratios.py) are left out of the shipped fit: added to it,
    # they made the out-of-source error on the Model Optimizer table worse (they say INT4 AWQ pays off at
    # batch 32-64 in 2024 static-batch engines; the 2025 trtllm-bench table says it does not), which
    # benchmarks/estimator_accuracy.py shows in its "+ 2024 speedup ratios" column.
    key = _cache_key(pts)
    with _FIT_LOCK:
        if key not in _FITS:
            _FITS[key] = fit_cached(pts)
        return _FITS[key]


def leave_one_source_out(points: pd.DataFrame, ratios: pd.DataFrame | None = None) -> pd.DataFrame:
    """Predict each source's points from a fit that never saw that source.

    Rows of other sources that repeat one of the held-out rows exactly (the same table copied into a
    blog) are also held out, so a duplicate cannot leak the answer. `ratios` (published speedup
    ratios) join every fit except where they come from the held-out source.
    """
    points = points.reset_index(drop=True)
    key_cols = ["gpu_id", "model_id", "precision", "batch", "isl", "osl", "tp", "output_tokens_per_sec"]
    keys = points[key_cols].astype(str).agg("|".join, axis=1)
    out = points.assign(predicted=np.nan)
    for src in points.source.unique():
        held = points.source == src
        leak = keys.isin(set(keys[held]))
        kw = {} if ratios is None else {"ratios": ratios[ratios.source != src]}
        cal = fit(points[~(held | leak)], **kw)
        out.loc[held, "predicted"] = predict(points[held], cal.params)
    return out
