"""Sweep benchmark: the shared-work sweep vs a naive one-process-per-recipe reference.

Runs baseline + FP8, INT8 SmoothQuant, INT4 AWQ, W4A8 AWQ and 2:4 SparseGPT on the bundled model:
  cold  - `tlab sweep` in a fresh store (model loaded once, data tokenized once, baseline once)
  warm  - the same command again (every result reused from the store)
  naive - each recipe in its own fresh process: load, tokenize, evaluate baseline, calibrate, evaluate
Prints wall time and peak RSS of each, and the ratios against the goals
(cold <= 0.8x naive, warm <= 5% of cold, peak RSS < 4 GiB).

    python benchmarks/sweep_bundled.py [--calib-size 16] [--calib-seq-len 256] [--eval-tokens 4096]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

RECIPES = [("fp8", "none"), ("int8_sq", "none"), ("int4_awq", "none"), ("w4a8_awq", "none"), ("bf16", "sparsegpt")]
GIB = 2**30


def timed(cmd: list[str], env: dict) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss * 1024  # Linux reports KiB


def naive_one(precision: str, sparsity: str, calib_size: int, calib_seq_len: int, eval_tokens: int) -> None:
    """What a user without shared work does: everything from scratch for one recipe."""
    import copy

    from engine import evaluate
    from engine.data import prepare
    from engine.models import load_model
    from engine.quantize import apply_recipe, round_to_bf16
    from engine.spec import DataSpec, ModelRef, Recipe

    lm = load_model(ModelRef())
    round_to_bf16(lm.model)
    data = prepare(lm.tokenizer, DataSpec(calib_size=calib_size, calib_seq_len=calib_seq_len, eval_tokens=eval_tokens))
    ref = evaluate.reference(lm.model, data.eval_ids)
    model = apply_recipe(copy.deepcopy(lm.model), Recipe(precision, sparsity), data.calib)
    print(evaluate.compare(model, data.eval_ids, ref))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calib-size", type=int, default=16)
    ap.add_argument("--calib-seq-len", type=int, default=256)
    ap.add_argument("--eval-tokens", type=int, default=4096)
    ap.add_argument("--naive-one", nargs=2, metavar=("PRECISION", "SPARSITY"))
    args = ap.parse_args()
    if args.naive_one:
        return naive_one(*args.naive_one, args.calib_size, args.calib_seq_len, args.eval_tokens)

    sizes = ["--calib-size", str(args.calib_size), "--calib-seq-len", str(args.calib_seq_len),
             "--eval-tokens", str(args.eval_tokens)]
    env = {**os.environ, "TLAB_HOME": tempfile.mkdtemp(prefix="tlab-bench-")}
    env.pop("TLAB_STORE_URL", None)
    tlab = [sys.executable, "-m", "engine.cli"]
    sweep = [*tlab, "sweep", "--recipes", ",".join(f"{p}+{s}" for p, s in RECIPES), *sizes]
    print(f"bundled model, recipes: baseline + {', '.join('/'.join(r) for r in RECIPES)}; "
          f"calib {args.calib_size}x{args.calib_seq_len} tokens, eval {args.eval_tokens} tokens; {os.cpu_count()} cores")

    cold = timed(sweep, env)
    warm = timed(sweep, env)
    naive_parts = [timed([sys.executable, __file__, "--naive-one", p, s, *sizes], env) for p, s in RECIPES]
    naive = (sum(w for w, _ in naive_parts), max(r for _, r in naive_parts))

    print(f"{'run':<8}{'wall s':>10}{'peak RSS GiB':>14}")
    for name, (wall, rss) in (("cold", cold), ("warm", warm), ("naive", naive)):
        print(f"{name:<8}{wall:>10.1f}{rss / GIB:>14.2f}")
    print(f"cold / naive = {cold[0] / naive[0]:.2f}  (goal <= 0.80: {'met' if cold[0] <= 0.8 * naive[0] else 'NOT met'})")
    print(f"warm / cold  = {warm[0] / cold[0]:.3f} (goal <= 0.05: {'met' if warm[0] <= 0.05 * cold[0] else 'NOT met'})")
    print(f"peak RSS     = {cold[1] / GIB:.2f} GiB (goal < 4 GiB: {'met' if cold[1] < 4 * GIB else 'NOT met'})")


if __name__ == "__main__":
    main()
