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
    # bandwidth per SM at which the SMs' bytes in flight cap a memory-bound kernel (GB/s, Little's law;
    # model.Items._stream_rate): ~45 puts an H100 SXM (132 SMs) a third below its 3.35 TB/s peak
    "sm_gb_s": (45.0, 1.0, 5.0, 2000.0),
    "kv_mem": (0.70, 0.3, 0.1, 1.0),  # attention: fraction of bandwidth reading the KV cache
    # elementwise passes over the hidden activations (norms, residual adds, MoE token permutation; see
    # model.act_passes): fraction of bandwidth. The published fit lands near 0.2, well below what a
    # streaming kernel reaches, so the counted passes also stand in for other per-token work that does
    # not shrink with TP (the fit learns it from the Mixtral TP2 rows; left out, it stays at the prior)
    "act_mem": (0.70, 0.3, 0.05, 1.0),
    "attn_c": (0.50, 0.4, 0.05, 1.0),  # prefill attention: fraction of BF16 peak
    "layer_us": (20.0, 1.0, 1.0, 300.0),  # fixed cost per layer per forward pass (launches, norms, sync)
    "knee_p": (2.0, 0.5, 1.0, 8.0),  # p of the soft max between memory and compute time
    # all-reduce bus bandwidth as a fraction of the per-direction link bandwidth. Bounded below by what
    # nccl-tests publish for large messages (all_reduce_perf busbw: DGX A100 ~230 of 300 GB/s, DGX H100
    # ~370+ of 450 GB/s): left free down to 0.1, the fit used it to soak up decode TP overhead and then
    # priced a 2,048-token prefill's all-reduces on Llama 2 70B TP8 at 2-3x the measured TTFT.
    "link_eff": (0.80, 0.3, 0.5, 1.0),
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
# GEMM efficiencies share one adjustment per role across formats (HARNESS_ROLES): the harness changes how
# the engine is timed, not how one format's kernels run, and per format it could not carry over: the only
# static-harness FP16 points are A100's, so held out, its FP16 adjustment had nothing to learn from.
HARNESS_ROLES = {"c_": "hs_c", "m_": "hs_m", "w0_": "hs_w0"}
# The link efficiency has none: NCCL's all-reduce runs the same whichever harness drives the engine.
for _name in ("layer_us", "c", "m", "w0", "knee_p", "ar_us"):
    PRIORS[f"hs_{_name}"] = (1.0, 0.5, 0.05, 20.0)


def harness_param(name: str) -> str:
    """The static-harness adjustment parameter of efficiency parameter `name`."""
    role = next((r for r in HARNESS_ROLES if name.startswith(r)), None)
    return HARNESS_ROLES[role] if role else f"hs_{name}"


# The sigmas above rank how firmly each prior is believed; the fit divides them by PRIOR_STRENGTH.
# A weak prior only decides what the measurements leave open (parameters no point informs stay at
# their prior exactly) while leave-one-source-out error is no worse than with firm priors
# (benchmarks/estimator_accuracy.py prints it).
PRIOR_STRENGTH = 0.01
PRIORS = {k: (v[0], v[1] / PRIOR_STRENGTH, v[2], v[3]) for k, v in PRIORS.items()}
FREE = [k for k, v in PRIORS.items() if v[1] > 0]


def prior_params() -> dict:
    return {k: v[0] for k, v in PRIORS.items()}
