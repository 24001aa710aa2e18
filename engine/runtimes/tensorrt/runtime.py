"""The TensorRT backend for diffusion denoisers: ONNX export -> trtexec build -> trtexec timing,
repeated and interleaved -> Measurements.

`compare` exports each (quantized) denoiser once with a dynamic batch axis, then per batch size
builds one engine per recipe for exactly that shape and times the engines round by round
(baseline, recipe, baseline, ...) so drift hits all alike, until the spread settles. Every
command and its output are kept in the work folder; provenance names the exact command lines.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import registry
from engine.errors import UnsupportedOnDevice
from engine.runtimes.base import Availability, Capabilities, Measurement, Progress, Runtime, runs_until_steady
from engine.runtimes.tensorrt import availability as avail
from engine.runtimes.tensorrt import commands
from engine.runtimes.tensorrt.failures import TrtexecRunError, classify_failure
from engine.runtimes.tensorrt.onnx_export import TEXT_TOKENS, DenoiserOnnx, export_denoiser
from engine.runtimes.tensorrt.report import TrtexecReport, parse_trtexec, to_measurement
from engine.runtimes.tool_run import run_tool, so_far
from engine.system import device_summary, versions

RUN_TIMEOUT_S = 3600  # one trtexec run; an SDXL UNet engine build takes many minutes


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    label = "TensorRT"
    # trtexec runs one engine at a time in its own process; compare() alternates the engines
    capabilities = Capabilities(device_kinds=("cuda",), interleaved=True, in_process=False)

    def __init__(self, device: str = "auto", settings: commands.TimingSettings | None = None,
                 work_dir: str | Path | None = None, text_tokens: int | None = None):
        self.device_request = device
        self.settings = settings or commands.TimingSettings()
        self.work_dir = Path(work_dir) if work_dir else None
        # a text-conditioned UNet's prompt length: the pipeline tokenizer's model_max_length (CLIP: 77)
        self.text_tokens = TEXT_TOKENS if text_tokens is None else text_tokens
        self._gpu: dict[str, Any] | None = None
        self._probed = False

    def gpu(self) -> dict[str, Any] | None:
        if not self._probed:
            self._gpu, self._probed = avail.probe_gpu(), True
        return self._gpu

    def availability(self, precision: str = "bf16", sparsity: str = "none") -> Availability:
        return avail.check(precision, sparsity, self.device_request, probe=self.gpu)

    def deploy(self, calibrated: Any, recipe: Any) -> Any:
        """The (modelopt-quantized) denoiser itself: `compare` exports it to ONNX."""
        return calibrated

    def measure(self, deployed: Any, recipe: Any, workload: Any, progress: Progress | None = None) -> list[Measurement]:
        return self.compare([(deployed, recipe)], workload, progress)[0]

    # --- helpers -------------------------------------------------------------------------------

    def _folder(self) -> Path:
        if self.work_dir is None:
            from engine.paths import tlab_home

            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            self.work_dir = tlab_home() / "tensorrt" / stamp
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def _run(self, cmd: list[str], log: Path, precision: str, batch: int,
             tick: Callable[[float], None] | None = None) -> TrtexecReport:
        try:
            proc = run_tool(cmd, RUN_TIMEOUT_S, tick=tick)
        except FileNotFoundError as exc:
            raise UnsupportedOnDevice(f"Cannot start trtexec ({cmd[0]}): {exc}. {avail.INSTALL_HINT}.") from exc
        except subprocess.TimeoutExpired as exc:
            raise TrtexecRunError(f"trtexec ran longer than {RUN_TIMEOUT_S // 60} minutes and was stopped; "
                                  "use a smaller batch size.") from exc
        output = proc.stdout + ("\n" + proc.stderr if proc.stderr else "")
        log.write_text(f"$ {commands.shell_line(cmd)}\n{output}")
        gpu = self.gpu() or {}
        error = classify_failure(proc.returncode, output, precision=registry.precision(precision).label,
                                 batch_size=batch, gpu_name=gpu.get("name"))
        if error:
            raise error
        return parse_trtexec(output)

    def _export(self, entries: Sequence[tuple[Any, Any]], progress: Progress) -> list[DenoiserOnnx]:
        out = []
        for i, (model, recipe) in enumerate(entries):
            progress(i / max(1, len(entries)) * 0.2, f"exporting {recipe.label} to ONNX")
            out.append(export_denoiser(model, self._folder() / f"{recipe.precision}.onnx",
                                       text_tokens=self.text_tokens))
        return out

    def compare(self, entries: Sequence[tuple[Any, Any]], workload: Any,
                progress: Progress | None = None) -> list[list[Measurement]]:
        """One list of Measurements (one per batch size) per (denoiser, recipe) entry. `workload`:
        batch_sizes, plus input_len / output_len recorded as they are (the diffusion sweep: image
        side and denoising steps)."""
        progress = progress or (lambda f, s: None)
        exe = commands.trtexec_executable()
        if exe is None:
            raise UnsupportedOnDevice(avail.refusal(f"the trtexec command is not on PATH; {avail.INSTALL_HINT}."))
        exported = self._export(entries, progress)
        folder = self._folder()
        gpu = self.gpu()
        per_entry: list[list[Measurement]] = [[] for _ in entries]
        batches = list(workload.batch_sizes)
        for b_i, batch in enumerate(batches):
            engines = [folder / f"{recipe.precision}_bs{batch}.plan" for _, recipe in entries]
            shapes = [onnx.shapes(batch) for onnx in exported]
            builds = [commands.build_command(exe, onnx=onnx.path, engine=engine, precision=recipe.precision,
                                             shapes=shape, settings=self.settings)
                      for onnx, engine, shape, (_, recipe) in zip(exported, engines, shapes, entries)]
            timed = [commands.time_command(exe, engine=engine, shapes=shape, settings=self.settings)
                     for engine, shape in zip(engines, shapes)]
            reports: list[list[TrtexecReport]] = [[] for _ in entries]
            base_f = 0.2 + 0.8 * b_i / len(batches)

            def run_rounds(rounds: int, first: bool, done: int) -> list[list[dict[str, float]]]:
                if first:  # build every engine (its own timing run counts as warm-up, not measured)
                    for cmd, (_, recipe) in zip(builds, entries):
                        stage = f"building the {recipe.label} TensorRT engine at batch {batch}"
                        progress(base_f, stage)
                        self._run(cmd, folder / f"build_{recipe.precision}_bs{batch}.log", recipe.precision, batch,
                                  lambda t, stage=stage: progress(base_f, so_far(stage, t)))
                new: list[list[dict[str, float]]] = [[] for _ in entries]
                for r in range(rounds):
                    for j, (cmd, (_, recipe)) in enumerate(zip(timed, entries)):
                        progress(base_f, f"timing {recipe.label} with trtexec at batch {batch} (run {done + r + 1})")
                        rep = self._run(cmd, folder / f"time_{recipe.precision}_bs{batch}_{done + r + 1}.log",
                                        recipe.precision, batch)
                        reports[j].append(rep)
                        new[j].append(rep.metrics())
                return new

            t0 = time.perf_counter()
            runs_until_steady(run_rounds, self.settings.repeats, self.settings.max_repeats, metric="step_latency_ms")
            elapsed = time.perf_counter() - t0
            for j, ((_, recipe), onnx) in enumerate(zip(entries, exported)):
                device = {**device_summary(gpu)}
                first = reports[j][0]
                if first.device_name:
                    device.setdefault("name", first.device_name)
                per_entry[j].append(to_measurement(
                    reports[j], precision=recipe.precision, batch_size=batch, input_len=workload.input_len,
                    output_len=workload.output_len, device=device, versions=_versions(),
                    command=commands.shell_line(builds[j]) + "\n" + commands.shell_line(timed[j]),
                    workload={"batch_size": batch, "shapes": {k: list(v) for k, v in shapes[j].items()},
                              "onnx": str(onnx.path), "onnx_dtype": onnx.dtype, "qdq_nodes": onnx.qdq,
                              "engine": str(engines[j]),
                              **({"onnx_note": onnx.note} if onnx.note else {}),
                              "timing_s": round(elapsed, 1)}))
        progress(1.0, "TensorRT timing done")
        return per_entry


def _versions() -> dict[str, str]:
    found = versions("nvidia-modelopt", "torch", "onnx", "tensorrt")
    return {("modelopt" if k == "nvidia-modelopt" else k): v for k, v in found.items()}
