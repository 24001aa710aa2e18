"""Efficiency parameters of the roofline: spec-sheet priors, their spread, and bounds.

Priors start from aiconfigurator's utilization levels (peer_tools.md section 10: bf16 0.70,
fp8 0.45, w4a16 0.45, w4a8 0.35, nvfp4 0.30; memory 0.8, a few microseconds per op). The fit moves
them only as far as measured points demand (each prior is a soft constraint in log space).
"""

from engine import registry

# name: (prior value, sigma of log(value), lower bound, upper bound)
PRIORS: dict[str, tuple[float, float, float, float]] = {
    # achieved fraction of memory bandwidth when streaming weights, per weight format
    "m_w16": (0.80, 0.3, 0.1, 1.0), "m_fp8": (0.80, 0.3, 0.1, 1.0), "m_int8_sq": (0.80, 0.3, 0.1, 1.0),
    "m_int4_awq": (0.70, 0.3, 0.05, 1.0), "m_nvfp4": (0.70, 0.3, 0.05, 1.0),
    # achieved fraction of the format's dense tensor peak in large GEMMs
    "c_w16": (0.70, 0.3, 0.1, 1.0), "c_fp8": (0.45, 0.4, 0.1, 1.0), "c_int8_sq": (0.45, 0.4, 0.1, 1.0),
    "c_int4_awq": (0.45, 0.4, 0.05, 1.0), "c_nvfp4": (0.30, 0.4, 0.05, 1.0),
    # dequantization rate of 4-bit weights, relative to peak/128 element per second: in the mixed-input
    # GEMM (dq_*) and in the batched GEMV used for a few rows (dqs_*)
    "dq_int4_awq": (1.0, 1.5, 0.01, 20.0),
    # the batched GEMV is memory-bound: its dequantization mostly hides under the weight loads
    "dqs_int4_awq": (50.0, 1.5, 0.1, 1000.0),
    "gemv_m": (4.0, 0.5, 1.0, 32.0),  # rows up to which the batched GEMV handles weight-only GEMMs
    # GEMM work (weights per layer per GPU x rows, billions) at which compute efficiency is half its
    # asymptote: too few output tiles to fill the SMs (small M, or small N x K at high TP) waste a wave
    "w0_bf16": (10.0, 1.5, 0.01, 10000.0), "w0_8bit": (10.0, 1.5, 0.01, 10000.0),
    "w0_fp4": (10.0, 1.5, 0.01, 10000.0),
    "kv_mem": (0.70, 0.3, 0.1, 1.0),  # attention: fraction of bandwidth reading the KV cache
    # elementwise passes over the hidden activations (norms, residual adds, MoE token permutation; see
    # model.act_passes): fraction of bandwidth. The published fit lands near 0.2, well below what a
    # streaming kernel reaches, so the counted passes also stand in for other per-token work that does
    # not shrink with TP (the fit learns it from the Mixtral TP2 rows; left out, it stays at the prior)
    "act_mem": (0.70, 0.3, 0.05, 1.0),
    "attn_c": (0.50, 0.4, 0.05, 1.0),  # prefill attention: fraction of BF16 peak
    "layer_us": (20.0, 1.0, 1.0, 300.0),  # fixed cost per layer per forward pass (launches, norms, sync)
    "knee_p": (2.0, 0.5, 1.0, 8.0),  # p of the soft max between memory and compute time
    "link_eff": (0.70, 0.3, 0.1, 1.0),  # all-reduce fraction of per-direction link bandwidth
    "ar_us": (10.0, 0.7, 1.0, 200.0),  # all-reduce latency
    # generation-wide multipliers on all efficiencies (Hopper is the reference)
    "gen_ampere": (1.0, 0.25, 0.4, 2.0), "gen_ada": (1.0, 0.25, 0.4, 2.0),
    "gen_blackwell": (1.0, 0.25, 0.4, 2.0), "gen_hopper": (1.0, 0.0, 1.0, 1.0),
}

# A precision whose weight-streaming and GEMM parameter groups differ (registry `estimator_weights` /
# `estimator_gemm`) borrows them: W4A8 AWQ is INT4 AWQ's packed weights fed to FP8 tensor cores, so it
# has INT4's bandwidth and dequantization efficiencies and FP8's MMA. Tying them lets W4A8 estimates
# learn from INT4 and FP8 measurements, where W4A8 has few.
def tied_params() -> dict[str, str]:
    """{parameter of a precision: the shared parameter it uses}, from the registry as it is now."""
    tied = {}
    for p in registry.PRECISIONS.values():
        if p.estimator_weights == p.estimator_gemm:
            continue
        tied[f"m_{p.name}"] = f"m_{p.estimator_weights}"
        tied[f"c_{p.name}"] = f"c_{p.estimator_gemm}"
        if p.dequantizes_weights:
            tied[f"dq_{p.name}"] = f"dq_{p.estimator_weights}"
            tied[f"dqs_{p.name}"] = f"dqs_{p.estimator_weights}"
    return tied


TIED = tied_params()  # as shipped; the model asks tied_params() so a newly registered precision counts

# Static-batching harness (gptSessionBenchmark, TensorRT-LLM <= 0.9 documents) vs trtllm-bench: the
# older documents time the engine alone, so their per-layer overhead and GEMM efficiencies differ.
# Each adjustment multiplies the parameter for static-harness points only; estimates use trtllm-bench.
# Attention (kv_mem, attn_c) has none: its kernels are the same whichever harness drives them, and left
# free the only in-flight-batching fixed-batch source (one ISL/OSL) set prefill attention at 6% of peak,
# which the max-throughput rows (nine ISL/OSL pairs, 35% median error then) contradict.
for _name in ("layer_us", "c_w16", "c_fp8", "m_w16", "m_fp8", "w0_bf16", "w0_8bit",
              "knee_p", "link_eff", "ar_us"):
    PRIORS[f"hs_{_name}"] = (1.0, 0.5, 0.05, 20.0)

# The sigmas above rank how firmly each prior is believed; the fit divides them by PRIOR_STRENGTH.
# A weak prior only decides what the measurements leave open (parameters no point informs stay at
# their prior exactly) while leave-one-source-out error is no worse than with firm priors
# (benchmarks/estimator_accuracy.py prints it).
PRIOR_STRENGTH = 0.01
PRIORS = {k: (v[0], v[1] / PRIOR_STRENGTH, v[2], v[3]) for k, v in PRIORS.items()}
FREE = [k for k, v in PRIORS.items() if v[1] > 0]


def prior_params() -> dict:
    return {k: v[0] for k, v in PRIORS.items()}
