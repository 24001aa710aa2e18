"""Diffusion sweep benchmark on the bundled digits UNet: baseline + INT8 SmoothQuant + FP8, 64 images each.

Runs `run_sweep` in a fresh store (TLAB_HOME in a temporary folder) with a batch-8 speed stage and prints:
  - calibration + evaluation wall time (goal < 5 min on 2 CPU cores), and the speed stage's time;
  - the measured CPU speedup of the INT8 denoiser step at batch 8 on real INT8 kernels (goal >= 1.3x);
  - the task-metric loss of INT8 and FP8 in points (goal <= 2) and their PSNR against the baseline.
The figures are printed whatever they are; the exit status is 1 when a goal is missed.

    python benchmarks/diffusion_bundled.py [--images 64] [--steps 20] [--calib-images 32]
"""

import argparse
import os
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args(argv)
    os.environ["TLAB_HOME"] = tempfile.mkdtemp(prefix="tlab-diffusion-bench-")

    from engine.pipeline import run_sweep
    from engine.spec import GenerationSpec, ModelRef, Recipe, SweepSpec, Workload
    from engine.store import open_store

    gen = GenerationSpec(labels=tuple(i % 10 for i in range(args.images)), images_per_condition=1,
                         steps=args.steps, calib_images=args.calib_images, seed=0)
    spec = SweepSpec(ModelRef("bundled-diffusion"), (Recipe("int8_sq"), Recipe("fp8")), kind="diffusion",
                     generation=gen, workload=Workload(batch_sizes=(args.batch,)), experiment="diffusion benchmark")
    t0 = time.perf_counter()
    records = run_sweep(spec, open_store())
    total = time.perf_counter() - t0
    by = {r.precision: r for r in records}
    bench_s = sum(r.timings.get("benchmark_s", 0.0) for r in records)
    quality_s = total - bench_s
    int8, fp8 = by["int8_sq"], by["fp8"]
    step = int8.metrics.get(f"speedup_bs{args.batch}")
    e2e = int8.metrics.get(f"end_to_end_speedup_bs{args.batch}")
    print(f"bundled digits UNet, {args.images} images each, {args.steps} DDIM steps, {args.calib_images} calibration images")
    print(f"calibration + evaluation wall time: {quality_s:.1f} s (goal < 300 s); speed stage {bench_s:.1f} s; "
          f"total {total:.1f} s")
    print(f"baseline task accuracy: {by['bf16'].metrics['task_accuracy']:.1%}")
    for name, r in (("INT8 SmoothQuant", int8), ("FP8", fp8)):
        m = r.metrics
        print(f"{name}: task accuracy {m['task_accuracy']:.1%}, loss {m['task_accuracy_loss_pts']:+.1f} pts (goal <= 2), "
              f"PSNR {m.get('psnr_db', float('inf')):.1f} dB, SSIM {m['ssim']:.4f}")
    for p in ("bf16", "int8_sq"):
        m = by[p].metrics
        if f"step_latency_ms_bs{args.batch}" not in m:
            print(f"{p}: not timed ({by[p].provenance.get('speed_not_measured')})")
            continue
        print(f"{p}: denoiser step {m[f'step_latency_ms_bs{args.batch}']:.2f} ms, "
              f"end to end {m[f'latency_ms_bs{args.batch}']:.1f} ms at batch {args.batch}")
    dev = by["bf16"].provenance.get("speed", {}).get("device", {})
    print(f"timed on {dev.get('name')} ({dev.get('isa')}), {dev.get('threads')} thread(s)"
          + (f" ({dev['threads_note']})" if dev.get("threads_note") else ""))
    refused = int8.provenance.get("speed", {}).get("speedup_refused") or int8.provenance.get("speed_not_measured")
    print(f"INT8 denoiser step speedup at batch {args.batch} (real INT8 kernels): "
          + (f"{step:.2f}x" if step else f"not given ({refused})") + " (goal >= 1.3x)"
          + (f"; end to end {e2e:.2f}x" if e2e else ""))
    print(f"FP8 speed: {fp8.provenance.get('speed_not_measured')}")
    missed = []
    if quality_s >= 300:
        missed.append("calibration + evaluation time")
    if step is None or step < 1.3:
        missed.append("INT8 step speedup")
    for name, r in (("INT8", int8), ("FP8", fp8)):
        if r.metrics["task_accuracy_loss_pts"] > 2:
            missed.append(f"{name} task-metric loss")
    print("goals missed: " + ", ".join(missed) if missed else "all goals met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
