"""The uncertainty band: a stated nominal interval (80%) built from held-out errors, per regime.

The residuals come from the leave-one-group-out protocols (engine/perf/holdout.py), saved by
`python benchmarks/estimator_accuracy.py --write` to engine/perf/heldout.csv. A query falls in a regime:
its GPU seen by the fit or not, its model family seen or not, and what is estimated (decode-bound
throughput, prefill-bound throughput, time to first token), for a dense or a mixture-of-experts model (MoE
estimates err several times more: one family's residuals must not widen every dense band, nor the dense ones
narrow an MoE band; an MoE cell with too few points falls back to the dense band and says so). The band's log half-width is the conformal
quantile of |log(estimate / published)| of the held-out points of that regime: with n exchangeable points,
the ceil((n + 1) * level)-th smallest covers a new point with probability >= level.
"""

import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

NOMINAL = 0.80
HELDOUT_FILE = Path(__file__).with_name("heldout.csv")
HELDOUT_COLUMNS = ["protocol", "held_out", "gpu_id", "model_id", "family", "version", "source", "precision",
                   "batch", "isl", "osl", "tp", "metric", "phase", "value", "predicted", "gpu_seen",
                   "family_seen", "log_ratio"]
MIN_POINTS = 8  # fewer held-out points than this in a regime: fall back to a coarser regime
FINGERPRINT_FILE = HELDOUT_FILE.with_suffix(".fingerprint")
# What the held-out residuals depend on: the estimator's code, the protocols and the data they fit.
_FINGERPRINTED = ("model.py", "params.py", "formats.py", "arch.py", "calibrate.py", "ratios.py", "memory.py",
                  "estimate.py", "holdout.py", "catalog.py")
_FINGERPRINTED_ASSETS = ("gpus.csv", "architectures.csv", "published_measurements.csv",
                         "modelopt_benchmark_reference.csv")


def fingerprint() -> str:
    """A hash of everything heldout.csv was computed from; `--write` saves it beside the file so a test can
    tell when the residuals (and so the bands) are stale."""
    import hashlib

    from engine.paths import asset

    h = hashlib.sha256()
    for name in _FINGERPRINTED:
        h.update(Path(__file__).with_name(name).read_bytes())
    for name in _FINGERPRINTED_ASSETS:
        h.update(asset(name).read_bytes())
    return h.hexdigest()[:16]


def model_family(model_id) -> str:
    """'meta-llama/Llama-3.1-70B' -> 'llama-3': sizes and point releases of one family share its design."""
    name = str(model_id).split("/")[-1].lower().removeprefix("meta-")
    m = re.match(r"(llama-\d|gpt-j|mixtral|falcon|mpt|qwen\d*|mistral|gemma\d*|phi-?\d*|deepseek)", name)
    return m.group(1) if m else re.sub(r"[-_]?\d+(\.\d+)?[bm]$", "", name)


MOE = " (MoE)"


def quantity(metric: str, phase: str, moe: bool = False) -> str:
    """'ttft', or throughput split by what bounds it: 'decode' (memory) or 'prefill' (compute); MoE marked."""
    return ("ttft" if metric == "ttft" else phase) + (MOE if moe else "")


@lru_cache(maxsize=256)
def is_moe(model_id) -> bool:
    """Whether the architecture catalog (or the model's config) says it routes through experts."""
    from engine.perf import arch

    try:
        return arch.resolve(model_id).is_moe
    except Exception:  # noqa: BLE001 - an unknown model: the estimate itself says so; its band is dense
        return False


def regime(gpu_seen: bool, family_seen: bool) -> str:
    if not gpu_seen and not family_seen:
        return "GPU and family unseen"
    return "GPU unseen" if not gpu_seen else "family unseen" if not family_seen else "GPU and family seen"


def conformal_quantile(abs_res, level: float = NOMINAL) -> float:
    """Split-conformal quantile: the ceil((n+1) * level)-th smallest |residual| (inf when n is too small)."""
    r = np.sort(np.asarray(abs_res, float)[~np.isnan(np.asarray(abs_res, float))])
    k = math.ceil((len(r) + 1) * level)
    return float(r[k - 1]) if 1 <= k <= len(r) else math.inf


def with_cells(res: pd.DataFrame) -> pd.DataFrame:
    return res.assign(regime=[regime(g, f) for g, f in zip(res.gpu_seen, res.family_seen)],
                      quantity=[quantity(m, p, is_moe(i)) for m, p, i in zip(res.metric, res.phase, res.model_id)])


def table(res: pd.DataFrame, level: float = NOMINAL) -> dict:
    """{(regime, quantity): (log half-width, n points)} from held-out residuals."""
    res = with_cells(res.dropna(subset=["log_ratio"]))
    out = {}
    for (reg, qty), g in res.groupby(["regime", "quantity"]):
        out[(reg, qty)] = (conformal_quantile(g.log_ratio.abs(), level), len(g))
    for qty, g in res.groupby("quantity"):  # the coarse fallback: every regime together
        out[("any", qty)] = (conformal_quantile(g.log_ratio.abs(), level), len(g))
    return out


def lookup(tab: dict, reg: str, qty: str) -> tuple[float, str]:
    """(log half-width, which held-out points it comes from) for a regime; coarser when a cell is thin."""
    tries = [(reg, qty)]
    if reg == "GPU and family unseen":  # no cell of its own in the data: the wider of the two unseen ones
        a, b = tab.get(("GPU unseen", qty), (math.inf, 0)), tab.get(("family unseen", qty), (math.inf, 0))
        if min(a[1], b[1]) >= MIN_POINTS:
            return max(a[0], b[0]), f"the wider of GPU-unseen ({a[1]}) and family-unseen ({b[1]}) held-out points"
    tries.append(("any", qty))
    for key in tries:
        q, n = tab.get(key, (math.inf, 0))
        if n >= MIN_POINTS and math.isfinite(q):
            return q, f"{n} held-out points ({key[0]}, {qty})"
    if qty.endswith(MOE):  # no MoE residuals to go on: the dense band, which likely understates the error
        q, basis = lookup(tab, reg, qty.removesuffix(MOE))
        return q, f"{basis}; fewer than {MIN_POINTS} MoE points, so the dense band"
    return math.inf, "no held-out points"


@lru_cache(maxsize=1)
def heldout() -> pd.DataFrame:
    """The saved held-out residuals (empty frame when the file is missing)."""
    if not HELDOUT_FILE.is_file():
        return pd.DataFrame(columns=HELDOUT_COLUMNS)
    return pd.read_csv(HELDOUT_FILE, dtype={"version": str, "held_out": str})


@lru_cache(maxsize=1)
def shipped_table() -> dict:
    h = heldout()
    return table(h) if len(h) else {}


def band(gpu_seen: bool, family_seen: bool, qty: str, moe: bool = False) -> tuple[float, str, str] | None:
    """(relative band: high = estimate * (1 + band), low = estimate / (1 + band); regime; basis) or None
    when no held-out residuals ship."""
    tab = shipped_table()
    if not tab:
        return None
    reg = regime(gpu_seen, family_seen)
    q, basis = lookup(tab, reg, qty + (MOE if moe else ""))
    if not math.isfinite(q):
        return None
    return math.expm1(q), reg, basis


def cross_coverage(res: pd.DataFrame, level: float = NOMINAL, group_cols: dict | None = None) -> pd.Series:
    """Log half-width for every row with the band built WITHOUT any residual of that row's held-out group
    (cross-conformal): a row held out by GPU h200 gets a band from residuals of points not on h200, in
    every protocol. Aligned with `res`; compare |log_ratio| with it for an honest coverage."""
    res = with_cells(res.reset_index(drop=True))
    out = np.full(len(res), np.nan)
    for (proto, grp), idx in res.groupby(["protocol", "held_out"]).groups.items():
        col = proto if group_cols is None else group_cols.get(proto, proto)
        tab = table(res[res[col] != grp], level)
        for i in idx:
            out[i] = lookup(tab, res.at[i, "regime"], res.at[i, "quantity"])[0]
    return pd.Series(out, index=res.index)
