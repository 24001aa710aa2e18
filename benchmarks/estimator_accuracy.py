"""How right is the GPU performance estimator? Prints figures; exits 1 if a goal is missed.

1. Leave-one-source-out on the fixed-batch throughput rows of assets/published_measurements.csv:
   for each source document, fit the efficiencies on every other source (duplicated rows of the held-out
   source are held out too) and predict the held-out rows. Goal: median absolute error <= 12%.
   For the record (no goal), the max-throughput rows (`--batch max`, trtllm-bench in-flight batching):
   the calibration never uses them, so all are out of source; signed errors by source, GPU and TP show
   any bias left.
2. Model Optimizer reference speedup table (assets/modelopt_benchmark_reference.csv, Llama 3.1 8B / 70B
   on H200, FP8 / INT4 AWQ / W4A8 AWQ vs BF16, batch 1/8/64, per-GPU speedup). Goal: median absolute
   error <= 8% and INT4 AWQ below 1.0x where the reference is. Shown calibrated on all published
   sources (the table's own source included, as the shipped estimator is: in-sample) and with that source
   left out (held out). The goal is judged on the held-out column; the in-sample one is for reference.
   A third column adds the published speedup ratios of the 2024 Model Optimizer benchmark.md versions and
   the TensorRT-LLM quantization blog (engine/perf/ratios.py) to the held-out fit, to show what that
   evidence does (the shipped calibration does not use it: it makes the held-out error worse).
3. Stricter protocols (issue #13): leave-one-GPU-out, leave-one-model-family-out and
   leave-one-TensorRT-LLM-version-out beside leave-one-source-out (engine/perf/holdout.py), on fixed-batch
   throughput and on the published first-token latencies (TTFT, never used by the fit). Median, p90 and
   coverage of the stated 80% band per protocol and metric. The coverage is cross-conformal: a held-out
   group's band is built from residuals of points outside that group, in every protocol. Goals: GPU- and
   family-out throughput median <= 10%, p90 <= 35%; TTFT median <= 15%; coverage within 5 points of the
   nominal level on every protocol. `--write` saves the residuals to engine/perf/heldout.csv, which the
   shipped band (engine/perf/bands.py) and the GPU Selector's parity picture read.
   Terms tried against these protocols and left out because they made them worse (2026-11-30):
   efficiency scaling with the roof's size ((bandwidth, BF16 peak) / H100's)^-x, x fitted: GPU-out
   throughput median 16.0% -> 19.5%, p90 33% -> 55% (x fit from H100 vs H200 over-extrapolates to A100);
   MoE grouped-GEMM fill (small-GEMM penalty on all touched experts together): GPU-out throughput
   16.0% -> 26.0%, TTFT p90 47% -> 491%. Not testable here (no such point in assets/): sliding-window
   attention (no sliding-window model), PCIe all-reduce (every GPU is SXM/NVLink), prefill chunking beyond
   8,192 tokens (every published TTFT has ISL <= 2,048); parallel attention/MLP blocks change only the
   all-reduce count at TP > 1, where GPT-J has 2 points. GQA/MQA KV sizes and MoE expert loading per batch
   were already modeled (engine/perf/model.py).
   Kept (2026-12-01), each measured against these protocols (median / p90 / coverage, TTFT median):
   one static-harness adjustment per role (hs_c, hs_m, hs_w0) instead of one per format (A100's are the
   only static FP16 rows, so held out, its FP16 adjustment had nothing to learn from): GPU-out throughput
   16.0% -> 12.5%, TTFT 24.1% -> 15.4%; then the all-reduce link efficiency held to what nccl-tests
   publish (>= 0.5, no harness adjustment; free, it fell to 0.1 and priced Llama 2 70B TP8 prefill at
   2-3x the measured TTFT): family-out TTFT p90 128% -> 49%; then an SM memory-concurrency cap (Little's
   law: SMs x sm_gb_s, SM counts from the whitepapers in engine/perf/catalog.py): GPU-out 12.6% -> 11.9%,
   TTFT 16.4% -> 14.0%. All three, before -> after: source-out 8.0/29.0/81.4% -> 7.7/33.1/79.6%, TTFT
   10.4% -> 10.2%; GPU-out 16.0/33.1/82.0% -> 11.9/31.3/77.8%, TTFT 24.1% -> 14.0%; family-out
   10.0/40.0/78.4% -> 9.2/45.9/83.2%, TTFT 16.2% -> 15.4% (coverage 79% -> 93%); version-out
   8.1/29.2/80.8% -> 7.7/31.1/79.6%. Cost, for the record: the max-throughput rows of section 1 went from
   9.2% to 14.2% median (each term alone worsens them: 14.4%, 10.6%, 13.4%), section 2 held out 16.5% ->
   16.6% with the INT4 AWQ crossover at 8B batch 8 lost (1.03x vs 0.75x).
   Still missed, and why: GPU-out median (H100 held out -13%, H200 held out +10%: the two Hopper GPUs
   differ only in memory, so with one held out nothing separates HBM3 from HBM3e efficiency beyond the
   SM cap, and A100 is FP16-only and H100 FP8-only in the static tables, so GPU and precision are
   confounded); family-out p90 (Mixtral is the only MoE family, so its routing costs cannot be learned
   with it held out; Llama 2 70B long-context decode on H200 TP1 is over-estimated ~24%, where the old
   tables do not state the KV-cache format); family-out TTFT median and coverage (three families, 58
   points: a held-out family's TTFT band comes from the other two).
Sections 1 and 2 are printed next to a plain uncalibrated roofline (full bandwidth and peak, hard max, no
overheads: what LLM-Viewer-style calculators do) and next to the spec-sheet priors without a fit.

Run: python benchmarks/estimator_accuracy.py [--write] [--protocols-only]
"""

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.perf import bands, calibrate, holdout  # noqa: E402
from engine.perf.ratios import published_ratios  # noqa: E402
from engine.perf.params import prior_params  # noqa: E402
from engine.paths import asset  # noqa: E402
from engine.reference import fixed_batch_throughput  # noqa: E402

LOSO_GOAL, SPEEDUP_GOAL = 0.12, 0.08
GROUP_MEDIAN_GOAL, GROUP_P90_GOAL, TTFT_GOAL, COVERAGE_TOL = 0.10, 0.35, 0.15, 0.05
MODELOPT_SOURCE = "benchmark.md@5a4242fa"
PREC = {"BF16": "bf16", "FP8": "fp8", "INT4 AWQ": "int4_awq", "W4A8 AWQ": "w4a8_awq"}
MODEL = {"Llama 3.1 8B": "meta-llama/Llama-3.1-8B", "Llama 3.1 70B": "meta-llama/Llama-3.1-70B"}


def abs_err(pred, meas):
    return np.abs(np.asarray(pred, float) / np.asarray(meas, float) - 1)


def pct(x):
    return f"{100 * x:6.1f}%"


def loso_section(res: pd.DataFrame) -> bool:
    rows = fixed_batch_throughput()
    skipped = rows[~rows.estimable]
    pts = calibrate.published_points()  # the shipped calibration's points: fixed-batch rows
    fixed_pts = pts
    print(f"== 1. Leave-one-source-out, fixed-batch output throughput ({len(fixed_pts)} rows from "
          f"{fixed_pts.source.nunique()} sources; {len(skipped)} rows skipped because the source does not state "
          "what an estimate needs)")
    for why, n in skipped.why_not.value_counts().items():
        print(f"   skipped {n:3d}: {why}")
    # the source protocol of section 3 (same leak rule as calibrate.leave_one_source_out, cached fits)
    loso = res[(res.protocol == "source") & (res.metric == "throughput")].copy()
    loso["output_tokens_per_sec"] = loso.value
    loso["e_cal"] = abs_err(loso.predicted, loso.output_tokens_per_sec)
    loso["e_prior"] = abs_err(calibrate.predict(loso, prior_params()), loso.output_tokens_per_sec)
    loso["e_plain"] = abs_err(calibrate.predict(loso, calibrate.PLAIN_ROOFLINE), loso.output_tokens_per_sec)
    shipped = calibrate.fit_cached(pts)
    e_in = abs_err(shipped.points.predicted, shipped.points.output_tokens_per_sec)
    print(f"   {'source (held out)':48s} {'n':>3s} | {'calibrated, LOSO':>24s} | {'priors, no fit':>16s} | "
          f"{'plain roofline':>16s}")
    print(f"   {'':48s} {'':>3s} | {'median':>7s} {'p90':>7s} {'max':>8s} | {'median':>7s} {'p90':>7s} | "
          f"{'median':>7s} {'p90':>7s}")
    for src, g in loso.groupby("source"):
        print(f"   {src[:48]:48s} {len(g):3d} | {pct(g.e_cal.median())} {pct(g.e_cal.quantile(.9))} "
              f"{pct(g.e_cal.max())} | {pct(g.e_prior.median())} {pct(g.e_prior.quantile(.9))} | "
              f"{pct(g.e_plain.median())} {pct(g.e_plain.quantile(.9))}")
    med, p90 = loso.e_cal.median(), loso.e_cal.quantile(0.9)
    print(f"   {'ALL':48s} {len(loso):3d} | {pct(med)} {pct(p90)} {pct(loso.e_cal.max())} | "
          f"{pct(loso.e_prior.median())} {pct(loso.e_prior.quantile(.9))} | "
          f"{pct(loso.e_plain.median())} {pct(loso.e_plain.quantile(.9))}")
    print(f"   (in-sample, fit on all sources: median {pct(np.median(e_in))}, p90 {pct(np.quantile(e_in, .9))})")
    # max-throughput rows (TensorRT-LLM 0.17 perf-overview): the calibration never uses them, so every
    # one is predicted out of source (no leave-one-out needed)
    mx = calibrate.published_points(include_max=True)
    mx = mx[mx.batch_mode == "max"].reset_index(drop=True)
    mx["signed"] = calibrate.predict(mx, shipped.params) / mx.output_tokens_per_sec - 1
    mx = mx.dropna(subset=["signed"])
    e_mx = mx.signed.abs()
    e_mx_plain = abs_err(calibrate.predict(mx, calibrate.PLAIN_ROOFLINE), mx.output_tokens_per_sec)
    print(f"   Not a goal, for the record: max-throughput rows ({len(e_mx)} estimable, `--batch max`; "
          f"a source the calibration does not use): median {pct(np.median(e_mx))}, "
          f"p90 {pct(np.quantile(e_mx, .9))} (plain roofline median {pct(np.nanmedian(e_mx_plain))}); "
          f"signed median {pct(mx.signed.median())} (negative = under-estimate)")
    for col in ("source", "gpu_id", "tp"):
        parts = [f"{k}: n {len(g)}, median {pct(g.signed.abs().median()).strip()}, "
                 f"signed {pct(g.signed.median()).strip()}" for k, g in mx.groupby(col)]
        print(f"     by {col:6s} " + "; ".join(parts))
    ok = med <= LOSO_GOAL
    print(f"   GOAL median <= {LOSO_GOAL:.0%}: {'PASS' if ok else 'FAIL'} (median {med:.1%}, p90 {p90:.1%})\n")
    return ok


def modelopt_queries() -> pd.DataFrame:
    ref = pd.read_csv(asset("modelopt_benchmark_reference.csv"))
    ref = ref[(ref.table == "llm_ptq_perf") & (ref.metric == "output_tokens_per_sec")]
    out = []
    for r in ref.itertuples():
        m = re.match(r"(.*) \(TP(\d+)\)", r.precision)
        isl, osl = (int(x) for x in re.search(r"ISL (\d+), OSL (\d+)", r.condition).groups())
        out.append(dict(model_id=MODEL[r.model], gpu_id="h200", precision=PREC[m.group(1)], tp=int(m.group(2)),
                        batch=int(r.batch_size), isl=isl, osl=osl, sparsity="none",
                        output_tokens_per_sec=float(r.value), source="modelopt reference",
                        provenance="published", harness="trtllm-bench"))
    return pd.DataFrame(out)


def speedups(q: pd.DataFrame, pred: np.ndarray) -> pd.DataFrame:
    q = q.assign(pred_gpu=pred / q.tp, meas_gpu=q.output_tokens_per_sec / q.tp)
    rows = []
    for (model, batch), g in q.groupby(["model_id", "batch"], sort=False):
        base = g[g.precision == "bf16"].iloc[0]
        for r in g[g.precision != "bf16"].itertuples():
            rows.append(dict(model=model.split("/")[-1], batch=batch, precision=r.precision,
                             reference=r.meas_gpu / base.meas_gpu, estimate=r.pred_gpu / base.pred_gpu))
    s = pd.DataFrame(rows)
    s["err"] = abs_err(s.estimate, s.reference)
    return s


def modelopt_section() -> bool:
    pts = calibrate.published_points()
    q = modelopt_queries()
    held_pts = pts[~pts.source.str.contains(MODELOPT_SOURCE)]
    ratios = published_ratios()
    with_ratios = calibrate.fit_cached(held_pts, ratios=ratios[~ratios.source.str.contains(MODELOPT_SOURCE)])
    variants = {
        "in-sample (all published sources)": calibrate.fit_cached(pts).params,
        f"HELD OUT (without {MODELOPT_SOURCE})": calibrate.fit_cached(held_pts).params,
        "held out + 2024 speedup ratios": with_ratios.params,
        "priors, no fit": prior_params(),
        "plain roofline": calibrate.PLAIN_ROOFLINE,
    }
    print("== 2. Model Optimizer reference speedups vs BF16 (H200, ISL 2048 / OSL 128, per-GPU; 70B BF16 is TP2)")
    tables = {k: speedups(q, calibrate.predict(q, p)) for k, p in variants.items()}
    first = next(iter(tables.values()))
    head = f"   {'model':14s} {'batch':>5s} {'precision':9s} {'ref':>6s}"
    for k in tables:
        head += f" | {k[:26]:>26s}"
    print(head)
    for i, r in first.iterrows():
        line = f"   {r.model:14s} {r.batch:5d} {r.precision:9s} {r.reference:6.2f}"
        for t in tables.values():
            line += f" | {t.estimate[i]:6.2f}x  err {pct(t.err[i])}      "
        print(line)
    ok_held, figures = True, {}
    for k, t in tables.items():
        cross = t[(t.precision == "int4_awq") & (t.reference < 1.0)]
        crossed = bool((cross.estimate < 1.0).all())
        figures[k] = (t.err.median(), crossed)
        print(f"   {k:44s} median error {pct(t.err.median())}, p90 {pct(t.err.quantile(.9))}; "
              f"INT4 AWQ below 1.0x where measured so ({len(cross)} cases): {'yes' if crossed else 'NO'}")
        if k.startswith("HELD OUT"):
            ok_held = t.err.median() <= SPEEDUP_GOAL and crossed
    print("   Ratio rows in the third column, each document's best-fitting assumed ISL/OSL, fit error:")
    r = with_ratios.ratios
    for src, g in r.groupby("source"):
        e = abs_err(g.predicted, g.speedup_per_gpu)
        print(f"     {src[:52]:52s} {len(g):3d} rows, {g.lengths.iloc[0]:18s} median {pct(np.median(e))}, "
              f"max {pct(e.max())}")
    med_held, crossed_held = figures[f"HELD OUT (without {MODELOPT_SOURCE})"]
    med_in, crossed_in = figures["in-sample (all published sources)"]
    print(f"   GOAL median <= {SPEEDUP_GOAL:.0%} with the INT4 AWQ crossover, judged on the HELD-OUT column: "
          f"{'PASS' if ok_held else 'FAIL'} (held out: median {med_held:.1%}, crossover "
          f"{'yes' if crossed_held else 'NO'})")
    print(f"   In-sample, for reference only (the shipped calibration includes the table's own source): "
          f"median {med_in:.1%}, crossover {'yes' if crossed_in else 'NO'}"
          f"{'' if ok_held else '; the goal is NOT met out of source'}.\n")
    return ok_held


def protocols_section(res: pd.DataFrame) -> bool:
    tput, ttft = res[res.metric == "throughput"], res[res.metric == "ttft"]
    print(f"== 3. Leave-one-group-out protocols ({tput.drop_duplicates(holdout._KEY).shape[0]} throughput points, "
          f"{ttft.drop_duplicates(holdout._KEY).shape[0]} TTFT points; stated band: "
          f"{bands.NOMINAL:.0%} nominal)")
    cross = bands.cross_coverage(res)
    summ = holdout.summary(res, cross)
    stated = holdout.summary(res, res.stated_band)
    print(f"   {'protocol':36s} {'metric':10s} {'n':>4s} {'median':>7s} {'p90':>7s} {'max':>8s} "
          f"{'coverage':>9s} {'(as shipped)':>14s} {'groups':>6s}")
    ok = True
    for r, st in zip(summ.itertuples(), stated.itertuples()):
        ngroups = res[(res.protocol == r.protocol) & (res.metric == r.metric)].held_out.nunique()
        cov_ok = abs(r.coverage - bands.NOMINAL) <= COVERAGE_TOL
        goal_ok = cov_ok
        if r.metric == "throughput" and r.protocol in ("gpu_id", "family"):
            goal_ok = goal_ok and r.median <= GROUP_MEDIAN_GOAL and r.p90 <= GROUP_P90_GOAL
        if r.metric == "ttft" and r.protocol in ("gpu_id", "family"):
            goal_ok = goal_ok and r.median <= TTFT_GOAL
        ok = ok and goal_ok
        print(f"   {holdout.PROTOCOLS[r.protocol]:36s} {r.metric:10s} {r.n:4d} {pct(r.median)} {pct(r.p90)} "
              f"{pct(r.max)}  {pct(r.coverage)}  {pct(st.coverage):>13s} {ngroups:6d}  "
              f"{'ok' if goal_ok else 'MISSED'}")
    print("   coverage: of the band built without the held-out group's residuals (cross-conformal, the honest "
          "figure); as shipped: of the band `tlab estimate` states, whose quantiles include these residuals "
          "(before engine/perf/heldout.csv existed: the old in-sample rule)")
    print("   worst held-out groups (throughput, median |error|):")
    t = tput.assign(err=np.abs(tput.predicted / tput.value - 1))
    for proto in ("gpu_id", "family", "version"):
        g = t[t.protocol == proto].groupby("held_out").err.agg(["size", "median"]).sort_values("median")
        print(f"     {holdout.PROTOCOLS[proto]:36s} " + "; ".join(
            f"{k}: {pct(v['median']).strip()} (n {int(v['size'])})" for k, v in g.iloc[::-1].iterrows()))
    print("   by regime (all protocols; the band each regime states):")
    cells = bands.with_cells(res)
    for (reg, qty), g in cells.groupby(["regime", "quantity"]):
        q, basis = bands.lookup(bands.table(res), reg, qty)
        inside = (g.log_ratio.abs() <= cross[g.index]).mean()
        print(f"     {reg:22s} {qty:8s} n {len(g):4d}: band +/-{np.expm1(q):.0%} ({basis}); "
              f"cross-conformal coverage {inside:.0%}")
    print(f"   GOALS (GPU-/family-out throughput median <= {GROUP_MEDIAN_GOAL:.0%}, p90 <= {GROUP_P90_GOAL:.0%}; "
          f"TTFT median <= {TTFT_GOAL:.0%}; coverage within {COVERAGE_TOL:.0%} of {bands.NOMINAL:.0%} on every "
          f"protocol): {'PASS' if ok else 'FAIL'}\n")
    return ok


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    res = holdout.all_protocols()
    if "--write" in argv:
        res[bands.HELDOUT_COLUMNS].to_csv(bands.HELDOUT_FILE, index=False, float_format="%.6g")
        bands.FINGERPRINT_FILE.write_text(bands.fingerprint() + "\n")
        print(f"wrote {len(res)} held-out residuals to {bands.HELDOUT_FILE} (fingerprint {bands.fingerprint()})")
    ok = protocols_section(res)
    if "--protocols-only" not in argv:
        ok = loso_section(res) and ok
        ok = modelopt_section() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
