"""Command lines for trtllm-bench and trtllm-build (pure: build argv lists, run nothing).

Option names are those of TensorRT-LLM's `tensorrt_llm/bench/benchmark/{throughput,low_latency}.py`
and `trtllm-build`. The workload's batch size becomes both `--concurrency` and `--max_batch_size`
so every request is served in a fixed batch, as in the reference tables; batch size 1 uses the
`latency` subcommand (batch fixed at 1, streaming on, EOS ignored, CUDA graphs forced).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

BENCH_ENV = "TLAB_TRTLLM_BENCH"  # override the trtllm-bench executable (tests point it at a stand-in)
BUILD_ENV = "TLAB_TRTLLM_BUILD"


@dataclass(frozen=True)
class BenchSettings:
    """Knobs of one trtllm-bench run that are not part of the workload."""

    kv_cache_free_gpu_mem_fraction: float = 0.90  # trtllm-bench's default
    rounds: int = 8  # requests per run = batch size x rounds (at least `min_requests`)
    min_requests: int = 16
    warmup_rounds: int = 1  # warm-up requests = batch size x warmup_rounds (at least 2)
    repeats: int = 3  # whole runs per point, for the spread
    streaming: bool = True  # stream tokens so the report carries TTFT/TPOT
    seed: int = 0

    def num_requests(self, batch_size: int) -> int:
        return max(self.min_requests, batch_size * self.rounds)

    def warmup(self, batch_size: int) -> int:
        return max(2, batch_size * self.warmup_rounds)


def _executable(env: str, name: str) -> list[str] | None:
    override = os.environ.get(env)
    if override:
        return shlex.split(override)
    found = shutil.which(name)
    return [found] if found else None


def bench_executable() -> list[str] | None:
    return _executable(BENCH_ENV, "trtllm-bench")


def build_executable() -> list[str] | None:
    return _executable(BUILD_ENV, "trtllm-build")


def model_label(source: str) -> str:
    """trtllm-bench's `--model` must be a name, not a path (it refuses existing files/folders):
    keep a Hugging Face id as is, else turn the folder into a name."""
    if re.fullmatch(r"[\w.-]+/[\w.-]+", source) and not Path(source).exists():
        return source
    stem = Path(source.rstrip("/")).name or "model"
    return "local/" + re.sub(r"[^\w.-]+", "-", stem)


def bench_command(exe: list[str], *, model: str, model_path: str | Path, dataset: str | Path,
                  report_json: str | Path, batch_size: int, settings: BenchSettings,
                  backend: str = "pytorch", engine_dir: str | Path | None = None,
                  extra_llm_api_options: str | Path | None = None,
                  workspace: str | Path | None = None) -> list[str]:
    """`trtllm-bench ... latency` for batch 1, `... throughput` with a fixed batch otherwise."""
    cmd = [*exe, "--model", model, "--model_path", str(model_path)]
    if workspace is not None:
        cmd += ["--workspace", str(workspace)]
    sub = "latency" if batch_size == 1 else "throughput"
    cmd += [sub, "--backend", backend, "--dataset", str(dataset), "--report_json", str(report_json),
            "--num_requests", str(settings.num_requests(batch_size)),
            "--warmup", str(settings.warmup(batch_size)),
            "--kv_cache_free_gpu_mem_fraction", f"{settings.kv_cache_free_gpu_mem_fraction:g}"]
    if engine_dir is not None:
        cmd += ["--engine_dir", str(engine_dir)]
    if sub == "throughput":
        # latency has no --eos_id (it ignores EOS itself) and fixes batch/concurrency at 1.
        cmd += ["--concurrency", str(batch_size), "--max_batch_size", str(batch_size), "--eos_id", "-1"]
        if settings.streaming:
            cmd.append("--streaming")
        if extra_llm_api_options is not None:  # `latency` has no such option
            cmd += ["--extra_llm_api_options", str(extra_llm_api_options)]
    return cmd


def build_command(exe: list[str], *, checkpoint_dir: str | Path, output_dir: str | Path,
                  max_batch_size: int, max_input_len: int, max_seq_len: int,
                  sparse: bool) -> list[str]:
    """Legacy engine build for formats the PyTorch backend cannot serve (INT8 SQ, 2:4 sparse)."""
    cmd = [*exe, "--checkpoint_dir", str(checkpoint_dir), "--output_dir", str(output_dir),
           "--gemm_plugin", "auto", "--max_batch_size", str(max_batch_size),
           "--max_input_len", str(max_input_len), "--max_seq_len", str(max_seq_len),
           "--max_num_tokens", str(max(max_batch_size * max_input_len, max_seq_len))]
    if sparse:
        cmd.append("--weight_sparsity")
    return cmd


def shell_line(cmd: list[str]) -> str:
    """The exact command as one copy-pasteable line (stored in provenance)."""
    return shlex.join(cmd)
