"""Read trtllm-bench's `--report_json` (not its stdout, whose labels change between versions).

Key structure: TensorRT-LLM `tensorrt_llm/bench/dataclasses/reporting.py::get_statistics_dict`
- engine: model, model_path, engine_dir, version, backend, dtype, kv_cache_dtype, quantization
- machine (newer versions): name, memory.total (GiB), clocks.mem (GHz)
- world_info: tp_size, pp_size, ep_size, world_size, max_batch_size, max_num_tokens, ...
- request_info: num_requests, avg_num_concurrent_requests, avg_input_length, avg_output_length
- performance: total_latency_ms, avg_request_latency_ms, request_throughput_req_s,
  system_output_throughput_tok_s, system_total_throughput_tok_s, output_throughput_per_user_tok_s,
  output_throughput_per_gpu_tok_s, request_latency_percentiles_ms {p50, p90, p95, p99, minimum, maximum, average}
- streaming_metrics (with --streaming, always for `latency`): token_output_speed_tok_s, avg_ttft_ms,
  avg_tpot_ms, tpot_percentiles, ttft_percentiles, gen_tps_percentiles
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import TlabError


class ReportFormatError(TlabError):
    """A report_json this code does not understand."""


# our metric name -> (section, key) in the report
_PERFORMANCE = {
    "output_tokens_per_sec": "system_output_throughput_tok_s",
    "output_tokens_per_sec_per_gpu": "output_throughput_per_gpu_tok_s",
    "output_tokens_per_sec_per_user": "output_throughput_per_user_tok_s",
    "total_tokens_per_sec": "system_total_throughput_tok_s",
    "requests_per_sec": "request_throughput_req_s",
    "request_latency_ms": "avg_request_latency_ms",
    "total_latency_ms": "total_latency_ms",
}
_STREAMING = {
    "ttft_ms": "avg_ttft_ms",
    "tpot_ms": "avg_tpot_ms",
    "decode_tokens_per_sec_per_user": "token_output_speed_tok_s",
}
_LATENCY_PERCENTILES = ("p50", "p90", "p99")


@dataclass
class BenchReport:
    metrics: dict[str, float]
    version: str | None
    quantization: str | None
    kv_cache_dtype: str | None
    backend: str | None
    machine: dict[str, Any] | None
    num_requests: int | None
    avg_input_length: float | None
    avg_output_length: float | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f


def parse_report(data: dict[str, Any]) -> BenchReport:
    perf = data.get("performance")
    if not isinstance(perf, dict):
        raise ReportFormatError(
            "trtllm-bench's report has no 'performance' section; this TensorRT-LLM version writes a "
            f"report format this tool does not know (top-level keys: {sorted(data)}).")
    metrics: dict[str, float] = {}
    for ours, key in _PERFORMANCE.items():
        v = _num(perf.get(key))
        if v is not None:
            metrics[ours] = v
    if "output_tokens_per_sec" not in metrics:
        raise ReportFormatError("trtllm-bench's report has no 'system_output_throughput_tok_s'; "
                                f"performance keys are {sorted(perf)}.")
    pct = perf.get("request_latency_percentiles_ms") or {}
    for p in _LATENCY_PERCENTILES:
        v = _num(pct.get(p))
        if v is not None:
            metrics[f"request_latency_{p}_ms"] = v
    streaming = data.get("streaming_metrics") or {}
    for ours, key in _STREAMING.items():
        v = _num(streaming.get(key))
        if v is not None:
            metrics[ours] = v
    engine = data.get("engine") or {}
    req = data.get("request_info") or {}
    return BenchReport(
        metrics=metrics,
        version=engine.get("version"),
        quantization=engine.get("quantization"),
        kv_cache_dtype=engine.get("kv_cache_dtype"),
        backend=engine.get("backend"),
        machine=data.get("machine"),
        num_requests=req.get("num_requests"),
        avg_input_length=_num(req.get("avg_input_length")),
        avg_output_length=_num(req.get("avg_output_length")),
        raw=data,
    )


def read_report(path: str | Path) -> BenchReport:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ReportFormatError(f"trtllm-bench's report {path} is not valid JSON ({exc}); "
                                "the run was probably cut short.") from exc
    if not isinstance(data, dict):
        raise ReportFormatError(f"trtllm-bench's report {path} is not a JSON object.")
    return parse_report(data)


def check_lengths(report: BenchReport, input_len: int, output_len: int, tolerance: float = 0.01) -> None:
    """Refuse a run whose requests did not generate the asked-for tokens (stopped early at EOS,
    or a different dataset): its tokens/s would not be comparable."""
    for what, got, want in (("output", report.avg_output_length, output_len),
                            ("input", report.avg_input_length, input_len)):
        if got is None:
            continue
        if abs(got - want) > tolerance * want:
            hint = (" Generation stopped early (EOS); run throughput with --eos_id -1."
                    if what == "output" and got < want else "")
            raise ReportFormatError(
                f"trtllm-bench averaged {got:.1f} {what} tokens per request, but the workload asks for "
                f"{want}; the throughput is not comparable.{hint}")
