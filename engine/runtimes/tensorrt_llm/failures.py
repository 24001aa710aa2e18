"""Turn a failed trtllm-bench / trtllm-build run into a message that says what to do.

The patterns are taken from real TensorRT-LLM output (see tests/fixtures/trtllm/README.md).
"""

from __future__ import annotations

import re

from engine.errors import ModelLoadError, TlabError, UnsupportedOnDevice


class TrtllmRunError(TlabError):
    """trtllm-bench or trtllm-build failed for a reason not recognised below; carries its output tail."""


class GpuOutOfMemory(TlabError):
    """The GPU ran out of memory while loading the model or allocating the KV cache."""


_OOM = [
    r"CUDA out of memory",
    r"OutOfMemoryError",
    r"insufficient GPU memory",
    r"cudaMalloc\w*\(.*\): out of memory",
    r"CUDA_ERROR_OUT_OF_MEMORY",
    r"\bout of memory\b",
]
_UNSUPPORTED = [
    r"require hardware with FP8 support",
    r"cannot be enabled on pre-\w+ Arch",
    r"no kernel image is available for execution on the device",
    r"not supported (on|for) (this|the current) (GPU|architecture|SM|device)",
    r"[Uu]nsupported (quantization|quant[_ ]algo|SM version|architecture)",
]
_MISSING = [
    r"Path '[^']*' does not exist",
    r"No such file or directory",
    r"does not appear to have a file named",
    r"is not a local folder and is not a valid model identifier",
    r"Can't load tokenizer",
    r"Couldn't instantiate the backend tokenizer",
    r"Should have a `model_type` key in its config\.json",
]


def _first(patterns: list[str], text: str) -> str | None:
    for p in patterns:
        m = re.search(p, text)
        if m:
            line_start = text.rfind("\n", 0, m.start()) + 1
            line_end = text.find("\n", m.end())
            return text[line_start: line_end if line_end != -1 else len(text)].strip()
    return None


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def classify_failure(returncode: int, output: str, report_written: bool, *, tool: str = "trtllm-bench",
                     kv_fraction: float = 0.90, batch_size: int | None = None,
                     precision: str = "", gpu_name: str | None = None) -> TlabError | None:
    """The error to raise for this run, or None if it succeeded (exit 0 and a report written)."""
    if returncode == 0 and report_written:
        return None
    oom = _first(_OOM, output)
    batch = f" or the batch size (now {batch_size})" if batch_size else ""
    if oom:
        return GpuOutOfMemory(
            f"{tool} ran out of GPU memory: {oom}\nLower the KV-cache share "
            f"(kv_cache_free_gpu_mem_fraction, now {kv_fraction:g}, e.g. to {max(0.1, kv_fraction - 0.2):g})"
            f"{batch}, or free the GPU from other processes.")
    unsupported = _first(_UNSUPPORTED, output)
    if unsupported:
        on = f" on {gpu_name}" if gpu_name else " on this GPU"
        return UnsupportedOnDevice(
            f"TensorRT-LLM cannot run {precision or 'this format'}{on}: {unsupported}\n"
            "Pick a precision this GPU generation supports (see the precision list) or use a newer GPU.")
    missing = _first(_MISSING, output)
    if missing:
        return ModelLoadError(
            f"{tool} could not find the model files: {missing}\n"
            "Export the calibrated model again (the export folder is incomplete or was moved).")
    if returncode == 0 and not report_written and len(output.strip().splitlines()) <= 3:
        # TensorRT-LLM docs (perf-benchmarking): "In some cases, the benchmarker may not print
        # anything at all. This behavior usually means that the benchmark has hit an out of memory issue."
        return GpuOutOfMemory(
            f"{tool} finished without printing a report, which TensorRT-LLM documents as an out-of-memory "
            f"sign. Lower kv_cache_free_gpu_mem_fraction (now {kv_fraction:g}){batch} and run again.")
    status = f"exit status {returncode}" if returncode != 0 else "no report written"
    return TrtllmRunError(f"{tool} failed ({status}). Its last output lines:\n{_tail(output) or '(none)'}")
