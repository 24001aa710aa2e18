"""How much the thread choice matters when another program keeps a core busy.

    python benchmarks/busy_machine.py [--eval-tokens 2048] [--rounds 3] [--hogs 1]

Starts `--hogs` spinning processes (each keeps one core busy), then times the bundled model's
baseline perplexity pass (the evaluation stage of every sweep) with torch using all cores and with
the number `engine.cpu_threads.choose_threads` picks, alternating, and prints the medians. Run it on
an otherwise idle machine: the hogs are the only other load it means to measure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HOG = "while True: pass"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval-tokens", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hogs", type=int, default=1)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    import torch

    from engine import evaluate
    from engine.cpu_threads import choose_threads
    from engine.data import prepare
    from engine.models.loader import load_model
    from engine.spec import DataSpec, ModelRef
    from engine.system import busy_cores, usable_cpus

    cores = len(usable_cpus())
    lm = load_model(ModelRef())
    data = prepare(lm.tokenizer, DataSpec(calib_size=1, calib_seq_len=64, eval_tokens=args.eval_tokens,
                                          eval_seq_len=512))

    def timed() -> float:
        t = time.perf_counter()
        evaluate.reference(lm.model, data.eval_ids)
        return time.perf_counter() - t

    print(f"{cores} usable cores; before the hogs start, other programs keep "
          f"{busy_cores(sample_s=1.0):.2f} core(s) busy")
    torch.set_num_threads(cores)
    quiet = statistics.median(timed() for _ in range(args.rounds))
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    try:
        time.sleep(1.0)
        chosen, why = choose_threads(env={})
        print(f"with {args.hogs} hog(s): choose_threads picks {why}")
        times: dict[int, list[float]] = {cores: [], chosen: []}
        for _ in range(args.rounds):
            for n in times:
                torch.set_num_threads(n)
                times[n].append(timed())
    finally:
        for h in hogs:
            h.kill()
    print(f"\nbaseline perplexity pass over {data.eval_tokens} tokens (median of {args.rounds}, seconds):")
    print(f"  idle machine, {cores} threads: {quiet:7.1f}")
    for n, ts in times.items():
        label = "all cores" if n == cores else "chosen"
        print(f"  {args.hogs} hog(s), {n} thread(s) ({label}): {statistics.median(ts):7.1f}   runs: "
              + ", ".join(f"{t:.1f}" for t in ts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
