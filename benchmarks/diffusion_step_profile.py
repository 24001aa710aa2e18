"""Where one denoiser step of the bundled digits UNet spends its time, unquantized vs INT8 on real kernels.

Calibrates INT8 SmoothQuant with modelopt (as a sweep does, on fewer images), deploys it with
engine.diffusion.kernels (checked against the calibrated model; its error is printed), then prints:
  - torch.profiler tables of one step at batch 8 for the baseline and the INT8 model (top ops by self time);
  - the Amdahl figures: the time the layers INT8 replaces take in the baseline, each timed alone on the
    inputs it sees in the model, and the speedup if they cost nothing;
  - the step speedup from interleaved rounds (baseline, INT8, baseline, ...): medians and spreads, wall
    time and, with one thread, the thread's CPU time too (steadier on a machine others share).

    python benchmarks/diffusion_step_profile.py [--batch 8] [--threads 1] [--rounds 15] [--calib-images 8]
                                                [--width-scale 2]

--width-scale K times the bundled UNet's channels in an UNTRAINED copy of its architecture (seeded random
weights): a what-if for the speed of a wider bundled model (kernel speed does not depend on the weights'
values; the images it makes are noise, so only the timings mean anything).
"""

import argparse
import statistics
import sys
import time
import warnings


def _setup(calib_images: int, steps: int, width_scale: int = 1):
    from engine.diffusion import kernels
    from engine.diffusion.bundled import load_bundled
    from engine.diffusion.quantize import calibration_inputs, quantize

    b = load_bundled()
    if width_scale != 1:
        import dataclasses

        import diffusers
        import torch

        from engine.diffusion.train_bundled import UNET_CONFIG

        torch.manual_seed(0)
        wide = {**UNET_CONFIG, "block_out_channels": tuple(c * width_scale for c in UNET_CONFIG["block_out_channels"])}
        b = dataclasses.replace(b, unet=diffusers.UNet2DModel(**wide).eval())
    calib = calibration_inputs(b.unet, b.scheduler, [i % 10 for i in range(calib_images)], steps, 1_000_003)
    calibrated = quantize(b.unet, "int8_sq", calib)
    deployed, counts = kernels.deploy_int8(b.unet, calibrated)
    try:
        diff = kernels.check_deployed(deployed, calibrated, calib[:: max(1, len(calib) // 4)][:4])
    except Exception as e:  # noqa: BLE001 - an untrained what-if's random outputs: the timings still stand
        if width_scale == 1:
            raise
        print(f"(untrained what-if) {e}")
        diff = float("nan")
    return b, deployed, counts, diff


def _inputs(b, batch: int):
    import torch

    from engine.diffusion.bundled import initial_noise

    x = initial_noise(batch, int(b.unet.config.sample_size), 0, int(b.unet.config.in_channels))
    y = torch.tensor([i % 10 for i in range(batch)])
    return x, torch.tensor(int(b.scheduler.config.num_train_timesteps) // 2), y


def _profile(name: str, model, args, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    x, t, y = args
    for _ in range(3):
        model(x, t, class_labels=y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            model(x, t, class_labels=y)
    print(f"\n== {name}: 10 denoiser steps ==")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))


def _clock():
    """The thread's CPU time with one thread (time taken by other programs does not count), else wall time."""
    import torch

    return (time.thread_time, "thread CPU") if torch.get_num_threads() == 1 else (time.perf_counter, "wall")


def _best_us(fn, n: int = 60) -> float:
    """The 10th-percentile time of fn in microseconds: what it costs when nothing else interferes."""
    clock = _clock()[0]
    for _ in range(5):
        fn()
    times = []
    for _ in range(n):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return sorted(times)[n // 10] * 1e6


def _amdahl(baseline, deployed, args) -> None:
    """Each layer INT8 replaces, timed alone on its own input from one step, baseline vs INT8."""
    x, t, y = args
    names = [n for n, m in deployed.named_modules() if type(m).__name__ in ("Int8Conv2d", "Int8Linear")]
    seen = {}
    hooks = [baseline.get_submodule(n).register_forward_pre_hook(
        lambda m, a, n=n: seen.__setitem__(n, a[0].clone())) for n in names]
    baseline(x, t, class_labels=y)
    for h in hooks:
        h.remove()
    step_base = _best_us(lambda: baseline(x, t, class_labels=y), 30)
    step_int8 = _best_us(lambda: deployed(x, t, class_labels=y), 30)
    print(f"\n== layers INT8 replaces, each timed alone ({_clock()[1]} time, 10th percentile) ==")
    total_b = total_i = 0.0
    for n in names:
        tb = _best_us(lambda: baseline.get_submodule(n)(seen[n]))
        ti = _best_us(lambda: deployed.get_submodule(n)(seen[n]))
        total_b, total_i = total_b + tb, total_i + ti
        print(f"{n:40s} input {str(tuple(seen[n].shape)):18s} baseline {tb:7.0f} us  INT8 {ti:7.0f} us  {tb / ti:5.2f}x")
    rest = step_base - total_b
    print(f"step ({_clock()[1]} time, 10th percentile): baseline {step_base / 1e3:.2f} ms, INT8 {step_int8 / 1e3:.2f} ms")
    print(f"replaceable layers: baseline {total_b / 1e3:.2f} ms ({total_b / step_base:.0%} of the step), "
          f"INT8 {total_i / 1e3:.2f} ms ({total_b / total_i:.2f}x faster alone)")
    print(f"the rest of the step (norms, SiLU, attention, high-precision convs, embeddings, Python): {rest / 1e3:.2f} ms")
    print(f"Amdahl: speedup if the INT8 layers cost nothing {step_base / rest:.2f}x; "
          f"with their measured INT8 cost {step_base / (rest + total_i):.2f}x")
    need = step_base / 1.3 - rest
    print("for 1.3x the INT8 layers may take at most " + (f"{need / 1e3:.2f} ms ({total_b / need:.1f}x faster than "
          "the baseline's)" if need > 0 else "nothing: unreachable"))


def _rounds(baseline, deployed, args, rounds: int, calls: int, cpu_clock: bool) -> None:
    x, t, y = args
    models = {"baseline": baseline, "INT8": deployed}
    clocks = {"wall": time.perf_counter, **({"thread CPU": time.thread_time} if cpu_clock else {})}
    runs = {(m, c): [] for m in models for c in clocks}
    for m in models.values():
        for _ in range(3):
            m(x, t, class_labels=y)
    for _ in range(rounds):
        for name, m in models.items():
            t0 = {c: f() for c, f in clocks.items()}
            for _ in range(calls):
                m(x, t, class_labels=y)
            for c, f in clocks.items():
                runs[(name, c)].append((f() - t0[c]) / calls * 1e3)
    print(f"\n== interleaved rounds: {rounds} x {calls} steps per model ==")
    for c in clocks:
        med = {m: statistics.median(runs[(m, c)]) for m in models}
        for m in models:
            r = runs[(m, c)]
            print(f"{c:10s} {m:8s} median {med[m]:.2f} ms/step, spread (max-min)/median {(max(r) - min(r)) / med[m]:.0%}")
        print(f"{c:10s} INT8 step speedup (medians): {med['baseline'] / med['INT8']:.2f}x")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=10, help="denoiser steps per timed run")
    ap.add_argument("--calib-images", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--top", type=int, default=20, help="rows of each profile table")
    ap.add_argument("--width-scale", type=int, default=1,
                    help="time an untrained copy of the bundled UNet with K times its channels (a what-if)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    b, deployed, counts, diff = _setup(args.calib_images, args.steps, args.width_scale)
    if args.width_scale != 1:
        print(f"UNTRAINED what-if: the bundled architecture with channels {b.unet.config.block_out_channels}, "
              f"{sum(p.numel() for p in b.unet.parameters()) / 1e6:.1f} M parameters; timings only")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), ISA {torch.backends.cpu.get_cpu_capability()}, "
          f"batch {args.batch}")
    print(f"deployed: {counts}; relative output difference vs modelopt's calibrated model {diff:.3%}")
    inputs = _inputs(b, args.batch)
    with torch.no_grad():
        _profile("baseline (float32)", b.unet, inputs, args.top)
        _profile("INT8 (oneDNN convolutions, fbgemm linears)", deployed, inputs, args.top)
        _amdahl(b.unet, deployed, inputs)
        _rounds(b.unet, deployed, inputs, args.rounds, args.calls, torch.get_num_threads() == 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
