"""Read trtexec's printed report: its "=== Performance summary ===" and what it says about itself.

The lines read (TensorRT 8.4 to 10.x print them alike; see tests/fixtures/tensorrt/):

    [I] Throughput: 8.66824 qps
    [I] Latency: min = 110.946 ms, max = ..., mean = ..., median = ..., percentile(90%) = ..., ...
    [I] GPU Compute Time: min = 109.522 ms, max = ..., mean = ..., median = ..., percentile(99%) = ...
    [I] Selected Device: NVIDIA GeForce RTX 3070 / [I] Compute Capability: 8.6
    [I] TensorRT version: 10.9.0 / &&&& PASSED TensorRT.trtexec [TensorRT v100900] [b34] # trtexec ...

"GPU Compute Time" is the engine's own run on the GPU (one query = one denoiser call at the built
batch size); "Latency" adds the host-device copies. trtexec prints each figure in milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from engine.errors import TlabError
from engine.store.entities import Measurement


class TrtexecReportError(TlabError):
    """trtexec's output has no performance summary this code can read."""


_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_STAT = re.compile(rf"(min|max|mean|median|percentile\(({_NUMBER})%\))\s*=?\s*({_NUMBER})\s*ms")
_THROUGHPUT = re.compile(rf"Throughput:\s*({_NUMBER})\s*qps")
_VERSION = re.compile(r"TensorRT version:\s*(\d+(?:\.\d+)*)")
_BANNER = re.compile(r"&&&& (RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v(\d+)\](?: \[b\d+\])? # (.*)")
_DEVICE = re.compile(r"Selected Device:\s*(.+?)\s*$", re.M)
_CC = re.compile(r"Compute Capability:\s*(\d+)\.(\d+)")
# which summary line -> the prefix of our metric names
_SECTIONS = {"GPU Compute Time": "gpu_compute", "Latency": "host_latency"}


@dataclass
class TrtexecReport:
    """What one trtexec run reported. `stats[section]` maps min/max/mean/median/p90/... to ms."""

    stats: dict[str, dict[str, float]]
    throughput_qps: float | None
    tensorrt_version: str | None
    status: str | None  # PASSED / FAILED / RUNNING (the last banner seen), None without banner
    command: str | None  # the command line trtexec echoes in its banner
    device_name: str | None
    compute_capability: tuple[int, int] | None
    raw_summary: str = field(default="", repr=False)

    def metrics(self) -> dict[str, float]:
        """Flat metric names: step_latency_ms (the GPU compute median, the speed metric), then
        gpu_compute_{min,mean,max,p90,...}_ms, host_latency_{...}_ms, queries_per_sec."""
        out: dict[str, float] = {}
        gpu = self.stats.get("gpu_compute", {})
        if "median" in gpu:
            out["step_latency_ms"] = gpu["median"]
        for section, values in self.stats.items():
            for stat, v in values.items():
                out[f"{section}_{stat}_ms"] = v
        if self.throughput_qps is not None:
            out["queries_per_sec"] = self.throughput_qps
        return out


def version_from_banner(code: str) -> str:
    """trtexec's banner version code -> dotted: '100900' -> '10.9.0', '101303' -> '10.13.3',
    '8403' -> '8.4.3' (NV_TENSORRT_VERSION: major*1000+minor*100+patch before 10, then
    major*10000+minor*100+patch)."""
    n = int(code)
    if n >= 10000:
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"
    return f"{n // 1000}.{n // 100 % 10}.{n % 100}"


def _stats(line: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in _STAT.finditer(line):
        pct = m.group(2)  # "90" -> p90, "99.9" -> p99.9
        name = m.group(1) if pct is None else "p" + (pct.rstrip("0").rstrip(".") if "." in pct else pct)
        out[name] = float(m.group(3))
    return out


def parse_trtexec(text: str) -> TrtexecReport:
    """The report in trtexec's output; TrtexecReportError if it has no GPU Compute Time summary."""
    start = text.rfind("=== Performance summary ===")
    summary = text[start:] if start != -1 else ""
    stats: dict[str, dict[str, float]] = {}
    for line in summary.splitlines():
        for label, key in _SECTIONS.items():
            # "Latency:" must not match "H2D Latency:" / "D2H Latency:"
            if re.search(rf"\]\s*{re.escape(label)}:|^\s*{re.escape(label)}:", line):
                stats[key] = _stats(line.split(f"{label}:", 1)[1])
    if not stats.get("gpu_compute", {}).get("median"):
        raise TrtexecReportError(
            "trtexec printed no 'GPU Compute Time' in a '=== Performance summary ==='; the engine was "
            "not timed (a build that failed, or --skipInference). Its last lines:\n" + _tail(text))
    throughput = _THROUGHPUT.search(summary)
    banners = _BANNER.findall(text)
    version = _VERSION.search(text)
    device = _DEVICE.search(text)
    cc = _CC.search(text)
    return TrtexecReport(
        stats=stats,
        throughput_qps=float(throughput.group(1)) if throughput else None,
        tensorrt_version=version.group(1) if version else (version_from_banner(banners[-1][1]) if banners else None),
        status=banners[-1][0] if banners else None,
        command=banners[-1][2].strip() if banners else None,
        device_name=device.group(1) if device else None,
        compute_capability=(int(cc.group(1)), int(cc.group(2))) if cc else None,
        raw_summary=summary.strip(),
    )


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(no output)"


def to_measurement(runs: list[TrtexecReport], *, precision: str, batch_size: int, input_len: int,
                   output_len: int, device: dict[str, Any], versions: dict[str, str], command: str,
                   workload: dict[str, Any] | None = None) -> Measurement:
    """One Measurement from one or more trtexec runs of the same engine: each metric is the median
    over the runs, its spread the runs' relative spread (engine.runtimes.base)."""
    from engine.runtimes.base import summarize_runs

    if not runs:
        raise TrtexecReportError("No trtexec run to summarize.")
    medians, spreads = summarize_runs([r.metrics() for r in runs])
    found = next((r for r in runs if r.tensorrt_version), None)
    tensorrt = {"tensorrt": found.tensorrt_version} if found else {}
    return Measurement(
        backend="tensorrt", precision=precision, sparsity="none", batch_size=batch_size, input_len=input_len,
        output_len=output_len, metrics=medians, spread=spreads, repeats=len(runs),
        provenance={"kind": "measured", "device": device, "backend": "tensorrt",
                    "versions": {**versions, **tensorrt}, "command": command,
                    "metric_note": ("step_latency_ms is the median of trtexec's 'GPU Compute Time' median per run "
                                    "(one query = one denoiser call at this batch size)"),
                    **({"workload": workload} if workload else {})})
