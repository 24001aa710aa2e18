"""The PyTorch runtime: deploy the calibrated weights to real low-precision kernels and time them.

CPU: FP32 baseline (CPUs have no fast bf16/fp16 decode path, so the baseline computes in
float32; the recipe name bf16/fp16 only decides how weights were rounded), INT8 SmoothQuant
(W8A8, fbgemm) and INT4 AWQ weight-only (PyTorch's int4pack kernel). FP8, W4A8 and NVFP4 have
no fast CPU kernels: they are reported as not measurable here, never timed as simulated
(fake-quantized) modules.
CUDA: BF16/FP16 baseline, FP8 (torch._scaled_mm, sm89+) and INT4 AWQ (tinygemm, sm80+).

`TorchRuntime().measure(model, recipe, workload)` takes the calibrated model (an nn.Module or
a loaded-model handle with `.model`), deploys it, and returns one Measurement per batch size.
"""

from __future__ import annotations

import os
from typing import Any

from engine import registry
from engine.errors import UnsupportedOnDevice
from engine.runtimes.base import (DEFAULT_MAX_SPREAD, Availability, Capabilities, Measurement, Progress, Runtime,
                                  runs_until_steady, steady_or_one_thread, summarize_runs)
from engine.runtimes.run_progress import RunProgress

# Why a precision has no kernels here, in more words than the registry's device list gives.
NOT_ON_CPU = {
    "fp8": "no fast FP8 kernels on CPU",
    "w4a8_awq": "no fast W4A8 (INT4 weights x FP8 activations) kernels on CPU",
    "nvfp4": "no FP4 kernels on CPU (NVFP4 needs a Blackwell GPU)",
}
NOT_ON_CUDA = {
    "int8_sq": "PyTorch's INT8 GEMM (torch._int_mm) has no small-batch decode path; TensorRT-LLM runs INT8 SmoothQuant",
    "w4a8_awq": "PyTorch has no W4A8 kernel; TensorRT-LLM runs W4A8 AWQ",
    "nvfp4": "the PyTorch runtime has no NVFP4 kernels; TensorRT-LLM runs NVFP4 on Blackwell",
}
ESTIMATE_HINT = "; see the estimate for this recipe instead."


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UnsupportedOnDevice(f"Device {device} was asked for but PyTorch sees no CUDA GPU here "
                                  f"(torch {torch.__version__}). Use device 'cpu' or 'auto'.")
    return device


def _versions() -> dict[str, str]:
    import torch

    from engine.system import versions

    found = versions("transformers", "nvidia-modelopt")  # an odd install may lack one; torch's matters
    return {"torch": torch.__version__, **{("modelopt" if k == "nvidia-modelopt" else k): v for k, v in found.items()}}


SPARSE_REASON = {
    "cpu": "The PyTorch runtime has no 2:4 sparse kernels on CPU: a pruned model would run at dense speed",
    "cuda": "The PyTorch runtime does not deploy 2:4 sparse kernels; TensorRT-LLM does on Ampere and newer",
}
NOT_HERE = {"cpu": ("Not measurable on this device", NOT_ON_CPU),
            "cuda": ("Not measured by the PyTorch runtime", NOT_ON_CUDA)}


def _kernels_for(precision: str, sparsity: str, kind: str):
    """(the precision's entry, a refusal when this backend has no kernels for it on `kind`, else None)."""
    prec = registry.precision(precision)
    registry.sparsity(sparsity)
    if sparsity != "none":
        return prec, Availability(False, SPARSE_REASON[kind] + ESTIMATE_HINT)
    if not prec.runs_on("torch", kind):
        prefix, reasons = NOT_HERE[kind]
        why = reasons.get(prec.name, f"the PyTorch runtime has no {prec.label} kernels on {kind.upper()}")
        return prec, Availability(False, f"{prefix}: {why}" + ESTIMATE_HINT)
    return prec, None


def cpu_availability(precision: str, sparsity: str = "none") -> Availability:
    prec, refused = _kernels_for(precision, sparsity, "cpu")
    return refused if refused is not None else _handler_check(prec, "cpu")


def cuda_availability(precision: str, sparsity: str, capability: tuple[int, int], gpu_name: str) -> Availability:
    prec, refused = _kernels_for(precision, sparsity, "cuda")
    if refused is not None:  # (an Availability that is not ok is falsy)
        return refused
    from engine.runtimes.torch import handlers

    handler = handlers.handler(prec.name)
    need = handler.min_cuda_capability if handler else registry.GENERATIONS[prec.min_generation]
    if tuple(capability) < need:
        return Availability(False, f"{prec.label} needs compute capability {need[0]}.{need[1]}+ for its PyTorch "
                                   f"kernel; {gpu_name} is {capability[0]}.{capability[1]}" + ESTIMATE_HINT)
    return _handler_check(prec, "cuda")


def _handler_check(prec, device_kind: str) -> Availability:
    """What this machine lacks for the precision's kernel, if anything (baselines need nothing)."""
    if prec.is_baseline:
        return Availability(True)
    from engine.runtimes.torch import handlers

    handler = handlers.handler(prec.name)
    if handler is None:
        return Availability(False, f"The PyTorch runtime has no {prec.label} handler" + ESTIMATE_HINT)
    why = handler.check(device_kind)
    return Availability(False, why.rstrip(".") + ESTIMATE_HINT) if why else Availability(True)


class TorchRuntime(Runtime):
    """Deploy + benchmark with PyTorch kernels. device: "auto" (CUDA when present, else CPU), "cpu", "cuda[:N]"."""

    name = "torch"
    label = "PyTorch"
    capabilities = Capabilities(device_kinds=("cpu", "cuda"), interleaved=True, in_process=True)

    def __init__(self, device: str = "auto", warmup: int = 1, repeats: int = 5, seed: int = 0,
                 int8_activations: str = "static", max_repeats: int | None = None, decode_loop: str = "auto"):
        if repeats < 2:
            raise ValueError("repeats must be at least 2 so the run-to-run spread is known.")
        self.device_request = device
        self.warmup, self.repeats, self.seed = warmup, repeats, seed
        # A burst of load from other programs can make one set of runs too noisy for a speedup;
        # more rounds (up to this many in all) usually settle it, as pyperf/timeit do.
        self.max_repeats = max(repeats, max_repeats if max_repeats is not None else 3 * repeats)
        self.int8_activations = int8_activations
        self.decode_loop = decode_loop  # "auto" (lean where it reproduces transformers) or "transformers"
        # On a shared machine one pinned thread gives steadier timings than fighting for all cores.
        self.threads = int(os.environ.get("TLAB_BENCH_THREADS", "0")) or None

    @property
    def device(self) -> str:
        return _resolve_device(self.device_request)

    def availability(self, precision: str = "bf16", sparsity: str = "none") -> Availability:
        try:
            device = self.device
        except UnsupportedOnDevice as exc:
            return Availability(False, str(exc))
        if device == "cpu":
            return cpu_availability(precision, sparsity)
        import torch

        cc = torch.cuda.get_device_capability(device)
        return cuda_availability(precision, sparsity, cc, torch.cuda.get_device_name(device))

    def deploy(self, calibrated: Any, recipe: Any):
        """The deployed copy of a calibrated model (see engine.runtimes.torch.deploy.deploy)."""
        from engine.runtimes.torch.deploy import deploy

        precision = recipe.precision
        model = calibrated

        avail = self.availability(precision)
        if not avail:
            raise UnsupportedOnDevice(avail.reason)
        return deploy(_unwrap(model), precision, self.device, self.int8_activations, self.decode_loop)

    def measure(self, deployed: Any, recipe: Any, workload: Any,
                progress: Progress | None = None) -> list[Measurement]:
        """`deployed`: what `deploy` returned for `recipe` (a calibrated model is deployed first)."""
        return self.compare([(deployed, recipe)], workload, progress)[0]

    def compare(self, entries: list[tuple[Any, Any]], workload: Any,
                progress: Progress | None = None) -> list[list[Measurement]]:
        """Benchmark several (model, recipe) pairs with their runs interleaved round by round, so
        machine-load drift affects all alike; one list of Measurements (per batch size) per entry."""
        import torch

        progress = RunProgress(progress)
        threads_before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._compare(entries, workload, progress)
        finally:
            torch.set_num_threads(threads_before)

    def _compare(self, entries, workload, progress) -> list[list[Measurement]]:
        import torch

        from engine.runtimes.torch import bench as torch_bench

        device = torch.device(self.device)
        nets, provs = [], []
        for model, recipe in entries:
            avail = self.availability(recipe.precision, recipe.sparsity)
            if not avail:
                raise UnsupportedOnDevice(avail.reason)
            net = _unwrap(model)
            if getattr(net, "deployed_precision", None) != recipe.precision:
                progress.say(f"deploying {recipe.label} to {device.type} kernels")
                net = self.deploy(net, recipe)
            nets.append(net)
            provs.append(self._provenance(net, recipe, device))
        vocab = nets[0].config.vocab_size
        names = [_display_name(r, p) for (_, r), p in zip(entries, provs)]
        out: list[list[Measurement]] = [[] for _ in entries]
        note = None  # once a batch size fell back to one thread, the rest run on one thread too
        if device.type == "cpu" and self.threads is None:
            from engine.cpu_threads import choose_threads
            from engine.system import busy_cores, usable_cpus

            # Load may have changed since the job started: count the free cores again.
            n, why = choose_threads(probe=lambda: busy_cores(sample_s=0.5))
            torch.set_num_threads(n)
            note = why if n < len(usable_cpus()) else None
            progress.say(f"CPU threads: {why}")
        n_batches, per_round = len(workload.batch_sizes), len(nets)
        for k, batch in enumerate(workload.batch_sizes):
            progress.slice(k / n_batches, (k + 1) / n_batches, (self.warmup + self.repeats) * per_round)
            ids = torch_bench.prompt_ids(vocab, batch, workload.input_len, self.seed, device)
            progress.say(f"batch {batch}, {workload.input_len} in / {workload.output_len} out: {', '.join(names)}")

            def measure():
                return self._runs_until_steady(nets, names, ids, workload.output_len, progress)

            if device.type == "cpu" and self.threads is None:
                runs, fell_back = steady_or_one_thread(
                    measure, torch.get_num_threads(), torch.set_num_threads,
                    on_retry=lambda worst: progress.plan((self.warmup + self.repeats) * per_round).say(
                        f"  still {worst:.0%} apart with {torch.get_num_threads()} threads (other programs use "
                        "these cores): measuring again on 1 thread"))
                note = fell_back or note
            else:
                runs = measure()
            for j, (_, recipe) in enumerate(entries):
                medians, spreads = summarize_runs(runs[j])
                prov = {**provs[j], "workload": {"batch_size": batch, "input_len": workload.input_len,
                                                 "output_len": workload.output_len}}
                if device.type == "cpu":
                    prov["device"] = {**prov["device"], "threads": torch.get_num_threads()}
                if note:
                    prov["threads_note"] = note
                out[j].append(Measurement(self.name, recipe.precision, recipe.sparsity, batch,
                                          workload.input_len, workload.output_len, medians, spreads,
                                          len(runs[j]), prov))
        progress(1.0, "speed measured")
        return out

    def _runs_until_steady(self, nets, names, ids, output_len, progress) -> list[list[dict[str, float]]]:
        from engine.runtimes.torch import bench as torch_bench

        def rounds(n: int, first: bool, done: int):
            return torch_bench.run_interleaved(
                nets, ids, output_len, self.warmup if first else 0, n,
                on_run=lambda j, i, m: progress.ran().say(f"  {names[j]} run {done + i}: "
                                                          f"{m.get('decode_tokens_per_sec', 0):.1f} decode tok/s"),
                on_warmup=lambda j: progress.ran().say(f"  {names[j]} warm-up run"))

        return runs_until_steady(rounds, self.repeats, self.max_repeats,
                                 on_more=lambda worst, n: progress.plan(n * len(nets)).say(
                                     f"  runs varied by {worst:.0%} (limit {DEFAULT_MAX_SPREAD:.0%}): "
                                     f"{n} more round(s)"))

    def _provenance(self, net: Any, recipe: Any, device: Any) -> dict[str, Any]:
        from engine.runtimes.torch import bench as torch_bench
        from engine.runtimes.torch import deploy as torch_deploy

        prov = {
            "kind": "measured",
            "device": torch_bench.device_info(device),
            "backend": self.name,
            "versions": _versions(),
            "compute_dtype": str(torch_deploy.baseline_dtype(recipe.precision, str(device))).replace("torch.", ""),
            "kernels": torch_deploy.describe(net),
            "decode_loop": _loop_text(net),
            "weights_mb": round(torch_deploy.deployed_weight_bytes(net) / 2**20, 1),
            "method": (f"greedy decode with KV cache, fixed output length (no EOS stop), {self.warmup} "
                       f"warm-up run(s), median over interleaved rounds ({self.repeats}, more while the spread "
                       f"is over {DEFAULT_MAX_SPREAD:.0%}, at most {self.max_repeats}; 'repeats' says how many); "
                       f"seed {self.seed}" + ("; CPU threads: device.threads (fewer than the cores, with "
                                              "threads_note, when other programs kept cores busy or several "
                                              "threads were too noisy)" if device.type == "cpu" else "")),
        }
        if recipe.precision == "int8_sq":
            prov["int8_activations"] = getattr(net, "deployed_int8_activations", self.int8_activations)
        return prov


PyTorchRuntime = TorchRuntime  # the name used in the project issue


def _display_name(recipe: Any, prov: dict[str, Any]) -> str:
    """The recipe as it actually ran: a CPU 'BF16' baseline computes in float32."""
    if recipe.precision in registry.BASELINES:
        dtype = prov["compute_dtype"]
        return {"float32": "FP32", "bfloat16": "BF16", "float16": "FP16"}.get(dtype, dtype) + " baseline"
    extra = f" ({prov['int8_activations']} activations)" if "int8_activations" in prov else ""
    return recipe.label + extra


def _loop_text(net: Any) -> str:
    if getattr(net, "decode_loop", None) == "lean":
        return ("lean Llama loop (engine.runtimes.torch.decode: the model's modules, preallocated KV cache, "
                "SDPA), checked at deployment to give transformers' logits")
    note = getattr(net, "decode_loop_note", None)
    return "transformers forward with DynamicCache" + (f" ({note})" if note else "")


def _unwrap(model: Any):
    return getattr(model, "model", model) if not hasattr(model, "named_modules") else model
