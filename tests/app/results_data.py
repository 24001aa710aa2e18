"""TEST DATA ONLY: synthetic result records shaped like engine.pipeline's, for app tests and the
results-page benchmark. The numbers are made up and never shipped or shown outside tests."""

import random

from engine.spec import DataSpec, ExperimentSpec, ModelRef, Recipe, Workload

PRECISIONS = ["bf16", "fp8", "int8_sq", "int4_awq", "w4a8_awq"]


def make_record(experiment: str, precision: str, i: int = 0, with_speed: bool = True, model: str = "bundled",
                batch_sizes=(1, 8), device: str = "cpu", seed: int = 0) -> dict:
    rng = random.Random(f"{experiment}-{precision}-{i}-{seed}")
    spec = ExperimentSpec(ModelRef(model), Recipe(precision), DataSpec(calib_size=4 + i, calib_seq_len=64),
                          Workload(32, 16, tuple(batch_sizes)) if with_speed else None)
    baseline = precision == "bf16"
    ppl = 20.0 if baseline else 20.0 * (1 + rng.uniform(0.001, 0.08))
    metrics = {"perplexity": ppl, "baseline_perplexity": 20.0, "ppl_increase_pct": (ppl / 20.0 - 1) * 100,
               "kl_div": 0.0 if baseline else rng.uniform(0.001, 0.05),
               "top1_agreement": 1.0 if baseline else rng.uniform(0.85, 0.99)}
    provenance = {"accuracy": {"kind": "measured", "device": device, "engine": "torch", "versions": {}}}
    if with_speed:
        for bs in batch_sizes:
            metrics[f"speedup_bs{bs}"] = 1.0 if baseline else rng.uniform(0.7, 2.5)
            metrics[f"decode_tok_s_bs{bs}"] = 100.0 * metrics[f"speedup_bs{bs}"]
        metrics["speedup"] = metrics[f"speedup_bs{batch_sizes[0]}"]
        provenance["speed"] = {"kind": "measured", "device": device, "engine": "torch", "backend": "torch"}
    return {"id": f"{spec.id}-{experiment}-{i}"[:64], "experiment": experiment, "model": model,
            "precision": precision, "sparsity": "none", "kv_cache": "auto", "spec": spec.to_dict(),
            "metrics": metrics, "provenance": provenance, "device": device,
            "timings": {"load_s": 10.0, "baseline_s": 4.0, "calibrate_s": 3.0, "evaluate_s": 4.0,
                        "benchmark_s": 6.0 if with_speed else 0.0}}


def make_records(n: int, experiments: int = 3, with_speed: bool = True, seed: int = 0) -> list[dict]:
    return [make_record(f"run-{k % experiments}", PRECISIONS[k % len(PRECISIONS)], k, with_speed, seed=seed)
            for k in range(n)]
