"""The TensorRT-LLM backend: export -> (legacy: trtllm-build) -> trtllm-bench, repeated -> Measurements."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import registry
from engine.system import device_summary, versions
from engine.errors import ModelLoadError, UnsupportedOnDevice
from engine.runtimes.base import (
    Availability,
    Capabilities,
    Measurement,
    Progress,
    Runtime,
    summarize_runs,
)
from engine.runtimes.tensorrt_llm import availability as avail
from engine.runtimes.tensorrt_llm import commands, dataset, export
from engine.runtimes.tensorrt_llm.failures import TrtllmRunError, classify_failure
from engine.runtimes.tensorrt_llm.report import check_lengths, read_report
from engine.runtimes.tool_run import run_tool, so_far

RUN_TIMEOUT_S = 3 * 3600  # one trtllm-bench run; large models take minutes just to load


def _versions(report_version: str | None) -> dict[str, str]:
    """engine.system's versions, with the TensorRT-LLM version its own report gives first."""
    found = versions("tensorrt_llm", "nvidia-modelopt", "torch")
    out = {"tensorrt_llm": report_version or found.get("tensorrt_llm") or "unknown"}
    out.update({key: found[dist] for dist, key in (("nvidia-modelopt", "modelopt"), ("torch", "torch")) if dist in found})
    return out


class TensorRTLLMRuntime(Runtime):
    name = "tensorrt_llm"
    label = "TensorRT-LLM"
    # trtllm-bench runs one recipe at a time in its own process, on GPU 0
    capabilities = Capabilities(device_kinds=("cuda",), interleaved=False, in_process=False)

    def __init__(self, settings: commands.BenchSettings | None = None, device: str = "auto"):
        self.settings = settings or commands.BenchSettings()
        self.device_request = device
        self._gpu: dict[str, Any] | None = None
        self._probed = False

    def gpu(self) -> dict[str, Any] | None:
        """GPU 0, probed once per runtime object."""
        if not self._probed:
            self._gpu, self._probed = avail.probe_gpu(), True
        return self._gpu

    def availability(self, precision: str = "bf16", sparsity: str = "none") -> Availability:
        if self.device_request == "cpu":
            return Availability(False, "TensorRT-LLM runs on NVIDIA GPUs only; this sweep runs on the CPU. "
                                       "Choose the PyTorch runtime, or device auto/cuda on a GPU machine.")
        return avail.check(precision, sparsity, probe=self.gpu)

    def deploy(self, calibrated: Any, recipe: Any) -> Any:
        """The calibrated model itself: `measure` exports it (modelopt's checkpoint, and an engine for
        the legacy flow) into its work folder, as TensorRT-LLM loads it from disk."""
        return calibrated

    # --- helpers -------------------------------------------------------------------------

    def _run(self, cmd: list[str], cwd: Path, log: Path,
             tick: Callable[[float], None] | None = None) -> subprocess.CompletedProcess:
        try:
            proc = run_tool(cmd, RUN_TIMEOUT_S, cwd, tick)
        except FileNotFoundError as exc:
            raise UnsupportedOnDevice(f"Cannot start {cmd[0]}: {exc}. Is TensorRT-LLM installed here?") from exc
        except subprocess.TimeoutExpired as exc:
            raise TrtllmRunError(f"{Path(cmd[0]).name} ran longer than {RUN_TIMEOUT_S // 60} minutes and was "
                                 "stopped; use a smaller workload.") from exc
        log.write_text(f"$ {commands.shell_line(cmd)}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        return proc

    def _export_root(self, model: Any, recipe: Any, work_dir: Path) -> Path:
        if isinstance(model, (str, Path)):
            root = Path(model)
            if not root.is_dir():
                raise ModelLoadError(f"Export folder {root} does not exist; calibrate and export the model first.")
            return root
        if isinstance(model, tuple):
            hf_model, tokenizer = model
        else:
            hf_model, tokenizer = getattr(model, "model", model), getattr(model, "tokenizer", None)
        root = work_dir / "export"
        export.export_for_trtllm(hf_model, tokenizer, root, recipe.precision, recipe.sparsity)
        return root

    def _build_engine(self, ckpt: Path, root: Path, workload: Any, work_dir: Path, gpu_name: str | None,
                      recipe: Any, progress: Progress | None) -> Path:
        exe = commands.build_executable()
        if exe is None:
            raise UnsupportedOnDevice(f"This recipe needs trtllm-build, i.e. {avail.LEGACY_HINT}.")
        engine_dir = root / export.ENGINE_DIR
        cmd = commands.build_command(exe, checkpoint_dir=ckpt, output_dir=engine_dir,
                                     max_batch_size=max(workload.batch_sizes),
                                     max_input_len=workload.input_len,
                                     max_seq_len=workload.input_len + workload.output_len,
                                     sparse=recipe.sparsity != "none")
        stage = f"Building TensorRT engine: {commands.shell_line(cmd)}"
        if progress:
            progress(0.0, stage)
        proc = self._run(cmd, work_dir, work_dir / "trtllm_build.log",
                         (lambda t: progress(0.0, so_far(stage, t))) if progress else None)
        err = classify_failure(proc.returncode, proc.stdout + proc.stderr, (engine_dir / "config.json").is_file(),
                               tool="trtllm-build", precision=recipe.precision, gpu_name=gpu_name)
        if err:
            raise err
        return engine_dir

    # --- the interface -------------------------------------------------------------------

    def measure(self, model: Any, recipe: Any, workload: Any, progress: Progress | None = None, *,
                model_name: str | None = None, work_dir: str | Path | None = None) -> list[Measurement]:
        """`model`: an export folder written by `export.export_for_trtllm`, or a calibrated HF model
        given as (model, tokenizer) / an object with .model and .tokenizer, exported here first.
        `model_name`: what trtllm-bench reports as the model (HF id or folder; made a name)."""
        ok = self.availability(recipe.precision, recipe.sparsity)
        if not ok:
            raise UnsupportedOnDevice(ok.reason)
        gpu = self.gpu() or {}
        s = self.settings
        if work_dir is None:
            from engine.paths import tlab_home
            from engine.spec import spec_hash

            key = spec_hash({"model": str(model_name or model) if isinstance(model, (str, Path)) else id(model),
                             "recipe": dataclasses.asdict(recipe)})
            work_dir = tlab_home() / "trtllm" / key
        work_dir = Path(work_dir).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)

        root = self._export_root(model, recipe, work_dir).resolve()
        flow = export.flow_for(recipe.precision, recipe.sparsity)
        engine_dir = None
        if flow == "pytorch":
            model_path = root / export.HF_DIR if (root / export.HF_DIR).is_dir() else root
            export.check_export_matches(model_path, recipe.precision, recipe.kv_cache)
            backend = "pytorch"  # quantization and KV-cache dtype come from the export's hf_quant_config.json
        else:
            ckpt = root / export.TRTLLM_CKPT_DIR
            model_path = root / export.META_DIR
            if not (ckpt / "config.json").is_file() or not (model_path / "config.json").is_file():
                raise ModelLoadError(f"{root} has no TensorRT-LLM checkpoint ({export.TRTLLM_CKPT_DIR}/) and "
                                     f"HF config ({export.META_DIR}/); export the recipe again.")
            export.check_export_matches(ckpt, recipe.precision, recipe.kv_cache)
            engine_dir = self._build_engine(ckpt, root, workload, work_dir, gpu.get("name"), recipe, progress)
            backend = "tensorrt"

        vocab, specials = dataset.vocab_and_specials(model_path)
        label = commands.model_label(str(model_name or root))
        expected_q = registry.precision(recipe.precision).trtllm_quant_algo
        exe = commands.bench_executable()
        results = []
        total_runs, done = len(workload.batch_sizes) * s.repeats, 0
        for bs in workload.batch_sizes:
            n = s.num_requests(bs)
            ds = dataset.write_dataset(
                work_dir / f"dataset_isl{workload.input_len}_osl{workload.output_len}_n{n}.jsonl",
                dataset.synthetic_requests(n, workload.input_len, workload.output_len, vocab, s.seed, specials))
            runs, reports, cmd, version, machine, kv_dtype = [], [], [], None, None, None
            for r in range(s.repeats):
                if progress:
                    progress(done / total_runs, f"TensorRT-LLM {recipe.precision} batch {bs}: run {r + 1} of {s.repeats}")
                done += 1
                report_path = work_dir / f"report_b{bs}_r{r}.json"
                report_path.unlink(missing_ok=True)
                cmd = commands.bench_command(exe, model=label, model_path=model_path, dataset=ds,
                                             report_json=report_path, batch_size=bs, settings=s,
                                             backend=backend, engine_dir=engine_dir)
                proc = self._run(cmd, work_dir, work_dir / f"trtllm_bench_b{bs}_r{r}.log")
                err = classify_failure(proc.returncode, proc.stdout + proc.stderr, report_path.is_file(),
                                       kv_fraction=s.kv_cache_free_gpu_mem_fraction, batch_size=bs,
                                       precision=recipe.precision, gpu_name=gpu.get("name"))
                if err:
                    raise err
                rep = read_report(report_path)
                if "quantization" in (rep.raw.get("engine") or {}) and rep.quantization != expected_q:
                    raise TrtllmRunError(
                        f"TensorRT-LLM ran the model as {rep.quantization or 'unquantized'}, not "
                        f"{expected_q or 'unquantized'} as the recipe asks; the export was not picked up. "
                        f"See {work_dir}.")
                check_lengths(rep, workload.input_len, workload.output_len)
                runs.append(rep.metrics)
                reports.append(str(report_path))
                version, machine, kv_dtype = rep.version, rep.machine or machine, rep.kv_cache_dtype
            metrics, spread = summarize_runs(runs)
            device = device_summary(gpu)
            if machine:
                device["reported_by_trtllm"] = machine
            results.append(Measurement(
                backend=self.name, precision=recipe.precision, sparsity=recipe.sparsity, batch_size=bs,
                input_len=workload.input_len, output_len=workload.output_len,
                metrics=metrics, spread=spread, repeats=len(runs),
                provenance={
                    "kind": "measured",
                    "device": device,
                    "backend": self.name,
                    "versions": _versions(version),
                    "command": commands.shell_line(cmd),
                    "workload": {"input_len": workload.input_len, "output_len": workload.output_len,
                                 "batch_size": bs, "num_requests": n, "warmup_requests": s.warmup(bs),
                                 "concurrency": bs, "eos": "ignored", "seed": s.seed},
                    "trtllm": {"flow": flow, "backend": backend, "kv_cache": recipe.kv_cache,
                               "kv_cache_dtype_reported": kv_dtype,
                               "kv_cache_free_gpu_mem_fraction": s.kv_cache_free_gpu_mem_fraction,
                               "reports": reports},
                }))
        if progress:
            progress(1.0, f"TensorRT-LLM {recipe.precision}: done")
        (work_dir / "measurements.json").write_text(json.dumps([m.to_dict() for m in results], indent=2))
        return results
