"""`tlab estimate`: calibrated speed and memory estimate for any catalog GPU.

The lead wires `add_estimate_parser` into engine/cli.py; `python -m engine.perf.cli ...` works alone.
"""

import argparse
import json
import sys

from engine import registry
from engine.errors import TlabError

PRECISION_NAMES = tuple(registry.PRECISIONS)


def add_estimate_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "estimate", help="estimate throughput, latency and memory of a model on a catalog GPU",
        description="Calibrated roofline estimate (provenance 'estimated'). Give one query with the "
                    "flags, or many with --input QUERIES.jsonl (one JSON object per line, same field "
                    "names as the flags without dashes).")
    p.add_argument("--model", help="Hugging Face id from the catalog, or a config.json path")
    p.add_argument("--gpu", help="catalog GPU id, e.g. h100-sxm")
    p.add_argument("--precision", help=f"one of {' '.join(PRECISION_NAMES)}")
    p.add_argument("--batch", help="batch size, or 'max' for the largest batch that fits")
    p.add_argument("--isl", help="input (prompt) tokens per request")
    p.add_argument("--osl", help="output tokens per request")
    p.add_argument("--tp", default=1, help="tensor-parallel GPUs (default 1)")
    p.add_argument("--sparsity", default=None, help="'2:4' for 2:4 structured sparsity")
    p.add_argument("--kv-cache", default="auto", choices=("auto", "fp8", "16"),
                   help="KV cache element type (auto: FP8 with FP8-activation formats)")
    p.add_argument("--price", type=float, default=None, help="USD per GPU-hour (default: the catalog's)")
    p.add_argument("--input", help="JSONL file of queries; prints one JSON result per line")
    p.add_argument("--no-store", action="store_true", help="calibrate from published points only")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--sdxl", action="store_true",
                   help="SDXL 1024x1024, 30 steps: estimated latency per catalog GPU (or --gpu) and precision, "
                        "beside Model Optimizer's published table (held-out errors)")
    p.set_defaults(func=run_estimate)
    return p


def _band_name(e) -> str:
    """'80% band' when the band is a stated interval (band_nominal), else 'band' (a rule of thumb)."""
    return f"{e.band_nominal:.0%} band" if e.band_nominal else "band"


def _human(e) -> str:
    lines = [f"{e.model} on {e.tp} x {e.gpu}, {e.precision}"
             + (" + 2:4" if e.sparsity != "none" else "")
             + f", batch {e.batch}, ISL {e.isl}, OSL {e.osl}  [estimated]"]
    if e.output_tokens_per_sec is not None:
        lines += [f"  output tokens/s: {e.output_tokens_per_sec:,.1f} total, "
                  f"{e.output_tokens_per_sec_per_gpu:,.1f} per GPU "
                  f"({_band_name(e)} {e.output_tokens_per_sec_low:,.0f} - {e.output_tokens_per_sec_high:,.0f})",
                  f"  TTFT {e.ttft_ms:,.1f} ms ({_band_name(e)} {e.ttft_ms_low:,.0f} - {e.ttft_ms_high:,.0f}), TPOT "
                  + (f"{e.tpot_ms:,.2f} ms" if e.tpot_ms is not None else "n/a")
                  + f", request {e.request_latency_ms:,.0f} ms",
                  f"  cost: ${e.cost_per_million_output_tokens_usd:,.3f} per million output tokens "
                  f"at ${e.price_per_hour_usd}/GPU-hour"]
    lines += [f"  memory per GPU: weights {e.weights_gib:.1f} + KV {e.kv_cache_gib:.1f} + activations "
              f"{e.activations_gib:.1f} + reserve {e.reserve_gib:.1f} = {e.memory_total_gib:.1f} of "
              f"{e.memory_capacity_gib:.1f} GiB -> {'fits' if e.fits_in_memory else 'DOES NOT FIT'}; "
              f"largest batch that fits: {e.max_batch_that_fits}",
              f"  calibrated from: {e.calibrated_from}"]
    if e.message:
        lines.append(f"  note: {e.message}")
    return "\n".join(lines)


def _calibration(args):
    from engine.perf import calibrate

    return calibrate.default_calibration(include_store=not getattr(args, "no_store", False))


def run_sdxl(args) -> int:
    """`tlab estimate --sdxl [--gpu ID] [--json]`: engine/perf/diffusion_fit.py's tables."""
    from engine.perf import catalog
    from engine.perf import diffusion_fit as sdxl

    try:
        extra = [f"--{k.replace('_', '-')}" for k in ("model", "precision", "batch", "isl", "osl", "sparsity", "input")
                 if getattr(args, k, None) is not None]
        if extra:
            raise TlabError(f"--sdxl estimates the SDXL pipeline of the published table; it takes only --gpu and "
                            f"--json. Drop {', '.join(extra)}.")
        gpu = catalog.gpu(args.gpu).id if args.gpu else None
    except TlabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmp, _ = sdxl.comparison()
    est = sdxl.catalog_estimates()
    held = {(r.gpu_id, r.precision): r for r in cmp.itertuples()}
    rows = []
    for r in est.itertuples():
        if gpu and r.gpu_id != gpu:
            continue
        h = held.get((r.gpu_id, r.precision))
        rows.append({"gpu": r.gpu_id, "precision": r.precision, "estimated_ms": round(r.estimated_ms, 1),
                     "estimated_speedup": round(r.estimated_speedup, 3), "provenance": "estimated",
                     "published_ms": round(h.published_ms, 1) if h else None,
                     "heldout_estimated_ms": round(h.estimated_ms, 1) if h else None,
                     "heldout_error_pct": round(h.error_pct, 1) if h else None})
    if args.json:
        print(json.dumps({"rows": rows, "summary": sdxl.summary(cmp), "source": sdxl.SOURCE}, indent=2))
        return 0
    print("SDXL 1.0 base, 1024x1024, 30 steps, batch 1 (CFG: 2 latents per UNet step)  [estimated]")
    for r in rows:
        pub = (f"  published {r['published_ms']:,.0f} ms, held-out estimate {r['heldout_estimated_ms']:,.0f} ms "
               f"({r['heldout_error_pct']:+.1f}%)" if r["published_ms"] else "")
        print(f"  {r['gpu']:<24} {r['precision']:<5} {r['estimated_ms']:>8,.0f} ms  x{r['estimated_speedup']:.2f}{pub}")
    s = sdxl.summary(cmp)
    print(f"  held-out error (leave-one-GPU-out) on the published table: median {s['median_abs_error_pct']:.1f}%, "
          f"max {s['max_abs_error_pct']:.1f}%; published: {sdxl.SOURCE}")
    return 0


def run_estimate(args) -> int:
    from engine.perf.estimate import estimate
    from engine.perf.query import from_mapping, read_jsonl

    if getattr(args, "sdxl", False):
        return run_sdxl(args)
    try:
        if args.input:
            cal = _calibration(args)
            status = 0
            for n, q in read_jsonl(args.input):
                try:
                    if isinstance(q, TlabError):
                        raise q
                    print(json.dumps(estimate(q, cal, args.price).to_dict()))
                except TlabError as e:
                    status = 2
                    print(json.dumps({"line": n, "error": str(e), "error_type": type(e).__name__}))
            return status
        q = from_mapping({k: getattr(args, k) for k in ("model", "gpu", "precision", "batch", "isl", "osl",
                                                        "tp", "sparsity", "kv_cache")})
        e = estimate(q, _calibration(args), args.price)
    except TlabError as e:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(e), "error_type": type(e).__name__}))
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(e.to_dict(), indent=2) if args.json else _human(e))
    if e.message:
        print(f"note: {e.message}", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="tlab")
    add_estimate_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
