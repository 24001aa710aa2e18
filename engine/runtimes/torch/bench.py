"""Time a fixed-length greedy generation: prefill, then exactly `output_len` tokens (no EOS stop).

One run = prefill of [batch, input_len] prompt tokens, then output_len - 1 single-token decode
steps with a KV cache. Timings use perf_counter around the device work (CUDA is synchronized).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from engine.runtimes.torch.decode import LEAN, LeanDecoder
from engine.runtimes.torch.hf_forward import transformers_loop

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def prompt_ids(vocab_size: int, batch: int, input_len: int, seed: int, device) -> torch.Tensor:
    """Seeded random prompt tokens: speed does not depend on the text, only on the shapes."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, input_len), generator=gen).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> bool:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:  # Linux: writing 5 resets the process's peak resident set size (VmHWM)
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _peak_mb(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _lean_loop(model, batch: int, max_len: int):
    decoder = LeanDecoder(model, batch, max_len)
    return decoder.logits, decoder.next_token


def generation_loop(model, batch: int, max_len: int):
    """(prefill(ids) -> last logits, step(token) -> next token) of the loop this model is timed with."""
    if getattr(model, "decode_loop", None) == LEAN:
        return _lean_loop(model, batch, max_len)
    return transformers_loop(model)


@torch.inference_mode()
def timed_generation(model, ids: torch.Tensor, output_len: int) -> tuple[dict[str, float], torch.Tensor]:
    """One run: metrics of this run and the generated tokens [batch, output_len].

    A deployed model whose `decode_loop` is "lean" runs engine.runtimes.torch.decode's loop (checked
    against transformers when it was deployed); any other model runs transformers' forward.
    """
    device = ids.device
    batch = ids.shape[0]
    peak_known = _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    prefill, step = generation_loop(model, batch, ids.shape[1] + output_len)
    out = prefill(ids)
    _sync(device)
    t_prefill = time.perf_counter()
    token = out.argmax(dim=-1, keepdim=True)
    _sync(device)
    t_first = time.perf_counter()
    tokens = [token]
    for _ in range(output_len - 1):
        token = step(token)
        tokens.append(token)
    _sync(device)
    t_end = time.perf_counter()
    decode_s = t_end - t_first
    steps = output_len - 1
    metrics = {
        "prefill_ms": (t_prefill - t0) * 1e3,
        "ttft_ms": (t_first - t0) * 1e3,
        "request_latency_ms": (t_end - t0) * 1e3,
        "output_tokens_per_sec": batch * output_len / (t_end - t0),
    }
    if steps > 0:
        metrics["tpot_ms"] = decode_s / steps * 1e3
        metrics["decode_tokens_per_sec"] = batch * steps / decode_s
    peak = _peak_mb(device) if peak_known else None
    if peak is not None:
        metrics["peak_memory_mb"] = peak
    return metrics, torch.cat(tokens, dim=1)


def run_interleaved(models: list, ids: torch.Tensor, output_len: int, warmup: int, repeats: int,
                    on_run=None, on_warmup=None) -> list[list[dict[str, float]]]:
    """`warmup` untimed runs of each model, then `repeats` rounds of one timed run per model.
    `on_warmup(j)` after each warm-up run and `on_run(j, round, metrics)` after each timed one.

    Alternating the models round by round makes slow changes in machine load (other programs,
    thermal limits) hit every model alike, so their ratio stays meaningful on a shared machine.
    """
    for j, model in enumerate(models):
        for _ in range(warmup):
            timed_generation(model, ids, output_len)
            if on_warmup:
                on_warmup(j)
    runs: list[list[dict[str, float]]] = [[] for _ in models]
    for i in range(repeats):
        for j, model in enumerate(models):
            metrics, _ = timed_generation(model, ids, output_len)
            runs[j].append(metrics)
            if on_run:
                on_run(j, i + 1, metrics)
    return runs


def device_info(device: torch.device) -> dict[str, Any]:
    """The `device` entry of a measurement's provenance."""
    if device.type == "cuda":
        from engine.system import probe_nvidia_gpu

        return {"kind": "cuda", **(probe_nvidia_gpu(device.index or 0) or {"name": torch.cuda.get_device_name(device)})}
    from engine.system import cpu_name, usable_cpus

    cores = len(usable_cpus())
    return {"kind": "cpu", "name": cpu_name(), "cores": cores, "threads": torch.get_num_threads(),
            "isa": torch.backends.cpu.get_cpu_capability()}
