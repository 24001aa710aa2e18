"""The roofline, split into work items whose cost the efficiency parameters turn into seconds.

A query (model, GPU, precision, TP, batch, ISL, OSL) becomes a table of work items per GPU:
GEMMs of the transformer body, the LM head, attention (KV cache read in decode, FLOPs in prefill),
tensor-parallel all-reduces, elementwise passes over the hidden activations (norms, residual adds, MoE
token permutation: every TP rank does them on the full hidden vector, so they do not shrink with TP)
and a fixed per-layer cost. The items do not depend on the fitted
parameters, so the calibration fit re-times the same arrays many times (`item_seconds`).

Time of a GEMM = p-norm of (memory time, compute time, dequantization time): the p-norm is a soft
max, which is where real kernels lose against the ideal roofline near the knee. Weight-only INT4
(and the INT4 side of W4A8) pays a dequantization cost per weight element and per tile of 64 rows,
which is why it stops paying off once batches grow. Memory time uses the bandwidth a streaming kernel
reaches, which the SMs' bytes in flight cap (`Items._stream_rate`).
"""

import math
from dataclasses import dataclass

import numpy as np

from engine.perf.arch import Architecture
from engine.perf.catalog import GPU
from engine.perf.params import PRIORS, harness_param, tied_params
from engine import registry
from engine.perf.formats import HEAD_BYTES, SPARSE_WEIGHT_FACTOR

DECODE_SAMPLES = 4  # context lengths sampled over the output (midpoint rule)
DEQUANT_TILE = 64  # rows of activations sharing one dequantized weight tile
# 2:4 sparse tensor cores peak at 2x dense. Kernels reach less; 1.5x is a prior, not fitted: the only
# published sparse numbers (Model Optimizer, Llama 2 70B FP8 sparse TP1 vs dense TP2) state no ISL/OSL.
SPARSE_COMPUTE_GAIN = 1.5
KINDS = ("gemm", "head", "attn", "comm", "act", "overhead")
# Passes over one 16-bit hidden-size activation vector per token and layer outside GEMMs and attention:
# two RMSNorms with their residual adds (each reads the input and the residual, writes the sum and the
# normalized output). MoE adds the token permutation (read 1, write k copies) and the un-permutation
# that sums the k expert outputs (read k, write 1): act_passes().
ACT_PASSES_DENSE = 8


def act_passes(arch: Architecture) -> int:
    return ACT_PASSES_DENSE + (2 * (1 + arch.experts_per_token) if arch.is_moe else 0)



@dataclass(frozen=True)
class Shape:
    arch: Architecture
    gpu: GPU
    precision: str
    tp: int
    batch: int
    isl: int
    osl: int
    kv_bytes: float
    sparse: bool = False
    # How the throughput is measured: "trtllm-bench" (in-flight batching runtime, what users run today)
    # or "static" (gptSessionBenchmark's static batches in TensorRT-LLM <= 0.9 documents).
    harness: str = "trtllm-bench"


def param_group(precision: str) -> str:
    """The efficiency parameters a precision's GEMMs use: its registry entry's groups when they are one
    (bf16 and fp16 share "w16"), else its own name, tied to its weight and GEMM groups (params.tied_params)."""
    prec = registry.precision(precision)
    return prec.estimator_weights if prec.estimator_weights == prec.estimator_gemm else prec.name


def _touched_experts(arch: Architecture, tokens: float) -> float:
    if not arch.is_moe:
        return 1.0
    e, k = arch.num_experts, arch.experts_per_token
    return e * (1 - (1 - k / e) ** tokens)


def work_items(s: Shape) -> list[dict]:
    """Per-GPU work items of one query: the time is sum(mult * item_seconds)."""
    a, g, tp = s.arch, s.gpu, s.tp
    prec = registry.precision(s.precision)
    wb = prec.weight_bytes * (SPARSE_WEIGHT_FACTOR.get(prec.weight_bytes, 1) if s.sparse else 1)
    cf = prec.compute_format
    peak = g.peak(cf) * (SPARSE_COMPUTE_GAIN if s.sparse else 1)
    bf16 = g.peak("bf16")
    heads = a.heads / tp
    kv_heads = math.ceil(a.kv_heads / tp)  # KV heads are replicated when TP > KV heads
    grp = param_group(s.precision)
    dequant = prec.dequantizes_weights
    items = []

    def gemm(phase, mult, tokens, kind="gemm"):
        if kind == "head":
            n_w = a.embed_params / tp
            items.append(dict(phase=phase, mult=mult, kind="head", group="w16", bytes=n_w * HEAD_BYTES,
                              flops=2 * tokens * n_w, peak=bf16, n_w=n_w, m=tokens, dequant=False,
                              size=n_w, cfmt="bf16"))
            return
        touched = _touched_experts(a, tokens)
        expert_w = a.expert_params * (touched if a.is_moe else 1)
        n_w = a.layers * (a.attn_params + expert_w) / tp
        active = a.layers * (a.attn_params + a.expert_params * (a.experts_per_token if a.is_moe else 1)) / tp
        # With MoE each expert GEMM sees only its share of the tokens.
        m_eff = tokens * (a.experts_per_token / touched if a.is_moe else 1)
        items.append(dict(phase=phase, mult=mult, kind="gemm", group=grp, bytes=n_w * wb,
                          flops=2 * tokens * active, peak=peak, n_w=n_w, m=m_eff, dequant=dequant,
                          size=(a.attn_params + a.expert_params) / tp, cfmt=cf))

    def attn(phase, mult, ctx, new_tokens):
        kvb = s.batch * ctx * 2 * a.layers * kv_heads * a.head_dim * s.kv_bytes
        if phase == "prefill":  # causal: half of the ISL x ISL score matrix
            fl = 2 * s.batch * new_tokens * new_tokens * a.head_dim * heads * a.layers
        else:
            fl = 4 * s.batch * ctx * a.head_dim * heads * a.layers
        items.append(dict(phase=phase, mult=mult, kind="attn", group="attn", bytes=kvb, flops=fl,
                          peak=bf16, n_w=0.0, m=float(s.batch), dequant=False, size=0.0, cfmt="attn"))

    def comm(phase, mult, tokens):
        if tp > 1:  # two all-reduces per layer (after attention and after the MLP), 16-bit activations
            items.append(dict(phase=phase, mult=mult * 2 * a.layers, kind="comm", group="comm",
                              bytes=2 * (tp - 1) / tp * tokens * a.hidden * 2, flops=0.0, peak=bf16,
                              n_w=0.0, m=tokens, dequant=False, size=0.0, cfmt="comm"))

    def act(phase, mult, tokens):
        # Every TP rank holds the full hidden vector of every token: this traffic does not shrink with TP,
        # so at high TP and large batches it is a sizeable share of the step (the GEMMs shrink 1/TP).
        items.append(dict(phase=phase, mult=mult * a.layers, kind="act", group="act",
                          bytes=tokens * a.hidden * 2 * act_passes(a), flops=0.0, peak=bf16, n_w=0.0, m=tokens,
                          dequant=False, size=0.0, cfmt="act"))

    def overhead(phase, mult):
        items.append(dict(phase=phase, mult=mult * a.layers, kind="overhead", group="overhead", bytes=0.0,
                          flops=0.0, peak=bf16, n_w=0.0, m=0.0, dequant=False, size=0.0, cfmt="overhead"))

    # Prefill: the whole batch's prompts in one pass; logits only for the last position.
    tokens = s.batch * s.isl
    gemm("prefill", 1, tokens)
    gemm("prefill", 1, s.batch, kind="head")
    attn("prefill", 1, s.isl, s.isl)
    comm("prefill", 1, tokens)
    act("prefill", 1, tokens)
    overhead("prefill", 1)
    # Decode: osl - 1 steps of one token per sequence, context growing from isl to isl + osl.
    steps = s.osl - 1
    if steps > 0:
        gemm("decode", steps, s.batch)
        gemm("decode", steps, s.batch, kind="head")
        for j in range(DECODE_SAMPLES):
            ctx = s.isl + (j + 0.5) * steps / DECODE_SAMPLES
            attn("decode", steps / DECODE_SAMPLES, ctx, 1)
        comm("decode", steps, s.batch)
        act("decode", steps, s.batch)
        overhead("decode", steps)
    for it in items:
        it.update(bw=g.bandwidth, sms=float(g.sms), link=g.link_gb_s * 1e9, gen=g.generation, harness=s.harness,
                  bf16=bf16)
    return items


class Items:
    """Work items of many queries as numpy columns (index = query number)."""

    def __init__(self, per_query: list[list[dict]]):
        rows = [dict(it, q=i) for i, its in enumerate(per_query) for it in its]
        self.n = len(per_query)
        col = lambda k, dt=float: np.array([r[k] for r in rows], dtype=dt)  # noqa: E731
        self.q = col("q", int)
        self.decode = np.array([r["phase"] == "decode" for r in rows])
        self.mult, self.bytes, self.flops = col("mult"), col("bytes"), col("flops")
        self.peak, self.n_w, self.m = col("peak"), col("n_w"), col("m")
        self.bf16 = col("bf16")  # the GPU's BF16 tensor peak: the clock of the dequantization cost
        self.bw, self.link = col("bw"), col("link")
        self.sms = col("sms")
        self.dequant = np.array([r["dequant"] for r in rows])
        self.kind = np.array([r["kind"] for r in rows])
        self.group = np.array([r["group"] for r in rows])
        self.gen = np.array([r["gen"] for r in rows])
        self.size = col("size")  # weights of one layer's GEMMs on one GPU: bigger GEMMs run closer to peak
        self.cfmt = np.array([r["cfmt"] for r in rows])
        self.static = np.array([r["harness"] == "static" for r in rows])

    def _param(self, p: dict, name: str, sel=None) -> np.ndarray | float:
        """Parameter `name` for the items in `sel`, with the harness adjustment `hs_<name>` applied to
        items measured by the static-batching harness (gptSessionBenchmark) when the fit has one."""
        name = tied_params().get(name, name)
        v = p[name]
        adj = p.get(harness_param(name))
        if adj is None:
            return v
        static = self.static if sel is None else self.static[sel]
        lo, hi = PRIORS[name][2], PRIORS[name][3]  # the adjusted value obeys the parameter's own bounds
        return np.where(static, np.clip(v * adj, lo, hi), v)

    def _stream_rate(self, p: dict, eff: np.ndarray) -> np.ndarray:
        """Bytes/s a memory-bound kernel reaches: the efficiency times the peak, capped softly (harmonic
        sum) by what the SMs keep in flight (Little's law: SMs x bytes in flight per SM / latency =
        SMs x sm_gb_s). An H200 has an H100's 132 SMs behind 1.43x the bandwidth, so it reaches a smaller
        share of its peak; an A100's 108 SMs face 2 TB/s and reach a larger one."""
        cap = np.where(self.sms > 0, self.sms * p.get("sm_gb_s", np.inf) * 1e9, np.inf)  # SMs unknown: no cap
        return 1 / (1 / (self.bw * eff) + 1 / cap)

    def seconds(self, p: dict) -> np.ndarray:
        """Seconds of each item (already times its multiplicity) under parameters `p`."""
        n = len(self.q)
        eta_m, eta_c, deq, deq_small = np.ones(n), np.ones(n), np.ones(n), np.ones(n)
        for grp in np.unique(self.group):
            sel = self.group == grp
            if grp == "attn":
                eta_m[sel], eta_c[sel] = self._param(p, "kv_mem", sel), self._param(p, "attn_c", sel)
            elif grp == "act":
                eta_m[sel] = self._param(p, "act_mem", sel)
            elif grp not in ("comm", "overhead"):
                eta_m[sel], eta_c[sel] = self._param(p, f"m_{grp}", sel), self._param(p, f"c_{grp}", sel)
                tied = tied_params()
                dq = tied.get(f"dq_{grp}", f"dq_{grp}")
                if dq in p:
                    deq[sel], deq_small[sel] = p[dq], p[tied.get(f"dqs_{grp}", f"dqs_{grp}")]
        genf = np.ones(n)
        for gen in np.unique(self.gen):
            genf[self.gen == gen] = p.get(f"gen_{gen}", 1.0)
        for cf in ("bf16", "fp8", "int8", "fp4"):
            sel = self.cfmt == cf
            if sel.any():  # GEMMs with little work (few rows x small weights) stay further from peak
                w0 = self._param(p, f"w0_{'8bit' if cf in ('fp8', 'int8') else cf}", sel) * 1e9
                work = self.size[sel] * np.maximum(self.m[sel], 1.0)
                eta_c[sel] *= work / (work + w0)
        t_mem = self.bytes / self._stream_rate(p, eta_m * genf)
        t_cmp = self.flops / (self.peak * eta_c * genf)
        # Dequantizing 4-bit weights: batched-GEMV kernels for up to ~gemv_m rows do it cheaply once per
        # weight; beyond, the mixed-input GEMM pays per tile of rows and runs far below the BF16 peak.
        small = 1 / (1 + (self.m / p["gemv_m"]) ** 4)
        # Unpacking runs on CUDA cores, whose rate scales like the BF16 tensor peak (SMs x clock), whatever
        # the MMA format: W4A8 unpacks as much as W4A16, only its multiply runs at the FP8 rate.
        t_deq = np.where(self.dequant, self.n_w * 128 / (self.bf16 * genf)
                         * (small / deq_small + (1 - small) * np.maximum(1.0, self.m / DEQUANT_TILE) / deq),
                         0.0)
        k = np.clip(self._param(p, "knee_p"), 1.0, 100.0)
        top = np.maximum(np.maximum(t_mem, t_cmp), t_deq)
        if np.all(k >= 50):  # the plain roofline: a hard max
            t = top
        else:  # scaled by the largest term so t**k cannot underflow
            safe = np.where(top > 0, top, 1.0)
            t = top * ((t_mem / safe) ** k + (t_cmp / safe) ** k + (t_deq / safe) ** k) ** (1 / k)
        t = np.where(self.kind == "act", t_mem, t)
        t = np.where(self.kind == "comm", self._param(p, "ar_us") * 1e-6
                     + self.bytes / (self.link * self._param(p, "link_eff")), t)
        t = np.where(self.kind == "overhead", self._param(p, "layer_us"), t * 1.0)
        t = np.where(self.kind == "overhead", t * 1e-6, t)
        return t * self.mult

    def totals(self, p: dict) -> tuple[np.ndarray, np.ndarray]:
        """(prefill seconds, decode seconds) per query."""
        t = self.seconds(p)
        pre = np.bincount(self.q, weights=np.where(self.decode, 0.0, t), minlength=self.n)
        dec = np.bincount(self.q, weights=np.where(self.decode, t, 0.0), minlength=self.n)
        return pre, dec

    def breakdown(self, p: dict, q: int = 0) -> dict:
        """Seconds per (phase, kind) for one query: what the time is spent on."""
        t = self.seconds(p)
        out = {}
        for phase, sel_ph in (("prefill", ~self.decode), ("decode", self.decode)):
            for kind in KINDS:
                sel = sel_ph & (self.kind == kind) & (self.q == q)
                out[f"{phase}_{kind}_s"] = float(t[sel].sum())
        return out

