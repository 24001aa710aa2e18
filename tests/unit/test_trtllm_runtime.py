"""The TensorRT-LLM backend end to end: a real modelopt export of a tiny calibrated Llama, then
trtllm-bench / trtllm-build replaced by the stand-ins in tests/fixtures/trtllm/bin, which check
the arguments with the real option declarations and replay captured real reports."""

import json
import os
import sys
from pathlib import Path

import pytest

from engine.errors import ModelLoadError, UnsupportedOnDevice
from engine.runtimes.base import speedup
from engine.runtimes.tensorrt_llm import availability as avail
from engine.runtimes.tensorrt_llm import export
from engine.runtimes.tensorrt_llm.commands import BenchSettings
from engine.runtimes.tensorrt_llm.failures import GpuOutOfMemory, TrtllmRunError
from engine.runtimes.tensorrt_llm.report import ReportFormatError
from engine.runtimes.tensorrt_llm.runtime import TensorRTLLMRuntime
from engine.spec import Recipe, Workload

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "trtllm"
# What the GPU probe returns on an H100 (torch.cuda / nvidia-smi cannot answer here).
H100 = {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559, "compute_capability": [9, 0],
        "generation": "hopper", "driver": "550.54.15"}
A100 = {"index": 0, "name": "NVIDIA A100-SXM4-80GB", "memory_mb": 81920, "compute_capability": [8, 0],
        "generation": "ampere"}
# The docs sample report was measured at ISL 2048 / OSL 128: the workload must match it.
DOCS_WORKLOAD = Workload(input_len=2048, output_len=128, batch_sizes=(1, 4))


def _tiny_llama():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    model.config.architectures = None  # as GGUF-loaded configs come
    return model


def _calibrate(model, cfg_name):
    import modelopt.torch.quantization as mtq
    import torch

    def forward_loop(m):
        with torch.no_grad():
            for _ in range(2):
                m(torch.randint(3, 256, (2, 16)))

    return mtq.quantize(model, getattr(mtq, cfg_name), forward_loop=forward_loop)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Real exports: FP8 (unified HF checkpoint) and INT8 SmoothQuant (legacy checkpoint)."""
    root = tmp_path_factory.mktemp("exports")
    fp8 = export.export_for_trtllm(_calibrate(_tiny_llama(), "FP8_DEFAULT_CFG"), None, root / "fp8", "fp8")
    export.export_for_trtllm(_tiny_llama(), None, root / "bf16", "bf16")
    sq = export.export_for_trtllm(_calibrate(_tiny_llama(), "INT8_SMOOTHQUANT_CFG"), None, root / "sq", "int8_sq")
    return {"fp8": fp8.parent, "bf16": root / "bf16", "int8_sq": sq.parent}


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLAB_TRTLLM_BENCH", str(FIX / "bin" / "trtllm-bench"))
    monkeypatch.setenv("TLAB_TRTLLM_BUILD", str(FIX / "bin" / "trtllm-build"))
    monkeypatch.setenv("PYTHON", sys.executable)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("FAKE_TRTLLM_ARGV_LOG", str(log))
    monkeypatch.setattr(avail, "probe_gpu", lambda: dict(H100))
    return log


def _calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_fp8_export_files(exports):
    hf = exports["fp8"] / export.HF_DIR
    assert {"config.json", "hf_quant_config.json", "model.safetensors"} <= set(os.listdir(hf))
    q = json.loads((hf / "hf_quant_config.json").read_text())
    assert q["quantization"]["quant_algo"] == "FP8"
    assert json.loads((hf / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert export.exported_quant_algo(hf) == ("FP8", None)


def test_int8_sq_goes_to_a_legacy_checkpoint(exports):
    root = exports["int8_sq"]
    assert (root / export.TRTLLM_CKPT_DIR / "rank0.safetensors").is_file()
    assert export.exported_quant_algo(root / export.TRTLLM_CKPT_DIR)[0] == "W8A8_SQ_PER_CHANNEL"
    assert (root / export.META_DIR / "config.json").is_file()


def test_export_recipe_mismatch_is_refused(exports):
    with pytest.raises(UnsupportedOnDevice, match="is unquantized, but the recipe fp8 needs FP8"):
        export.check_export_matches(exports["bf16"] / export.HF_DIR, "fp8")
    with pytest.raises(UnsupportedOnDevice, match="FP8 KV cache but the export .* records none"):
        export.check_export_matches(exports["fp8"] / export.HF_DIR, "fp8", kv_cache="fp8")
    export.check_export_matches(exports["fp8"] / export.HF_DIR, "fp8")  # matches: no error


def test_benchmark_fp8_with_stand_in(exports, stand_in, tmp_path):
    rt = TensorRTLLMRuntime(BenchSettings(repeats=2))
    seen = []
    ms = rt.measure(exports["fp8"], Recipe(precision="fp8"), DOCS_WORKLOAD, lambda f, msg: seen.append(f),
                      model_name="HuggingFaceTB/SmolLM2-135M", work_dir=tmp_path / "w")
    assert seen == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [m.batch_size for m in ms] == [1, 4]
    m = ms[1]
    assert m.metrics["output_tokens_per_sec"] == 5530.7382 and m.metrics["ttft_ms"] == 52667.0339
    assert m.repeats == 2 and m.spread["output_tokens_per_sec"] == 0.0
    p = m.provenance
    assert p["kind"] == "measured" and p["backend"] == "tensorrt_llm"
    assert p["device"]["name"] == "NVIDIA H100 80GB HBM3"
    assert p["versions"]["tensorrt_llm"].startswith("stand-in")  # taken from the report, not guessed
    assert "modelopt" in p["versions"]
    assert p["workload"] == {"input_len": 2048, "output_len": 128, "batch_size": 4, "num_requests": 32,
                             "warmup_requests": 4, "concurrency": 4, "eos": "ignored", "seed": 0}
    assert p["command"].startswith(str(FIX / "bin" / "trtllm-bench"))
    assert "--concurrency 4 --max_batch_size 4 --eos_id -1" in p["command"]
    calls = _calls(stand_in)
    assert len(calls) == 4 and [c[4] for c in calls] == ["latency", "latency", "throughput", "throughput"]
    assert all(c[1] == "HuggingFaceTB/SmolLM2-135M" and c[3].endswith("/fp8/hf") for c in calls)
    # dataset written in trtllm-bench's format, fixed lengths
    ds = Path(calls[-1][calls[-1].index("--dataset") + 1])
    lines = [json.loads(x) for x in ds.read_text().splitlines()]
    assert len(lines) == 32 and all(len(x["input_ids"]) == 2048 and x["output_tokens"] == 128 for x in lines)
    saved = json.loads((tmp_path / "w" / "measurements.json").read_text())
    assert saved[1]["metrics"]["output_tokens_per_sec"] == 5530.7382


def test_benchmark_refuses_a_run_that_stopped_early(exports, stand_in, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRTLLM_SCENARIO", "report:issue_6294_h100_fp8_128_128")
    with pytest.raises(ReportFormatError, match="28.0 output tokens"):
        TensorRTLLMRuntime(BenchSettings(repeats=1)).measure(
            exports["fp8"], Recipe(precision="fp8"), Workload(128, 128, (8,)), work_dir=tmp_path / "w")


def test_benchmark_refuses_when_trtllm_ignored_the_quantization(exports, stand_in, monkeypatch, tmp_path):
    # A report saying FP8 (issue #6294's model) for a bf16 export: the numbers would be mislabelled.
    monkeypatch.setenv("FAKE_TRTLLM_SCENARIO", "report:issue_6294_h100_fp8_128_128")
    monkeypatch.setenv("FAKE_TRTLLM_KEEP_QUANT", "1")
    with pytest.raises(TrtllmRunError, match="ran the model as FP8, not unquantized"):
        TensorRTLLMRuntime(BenchSettings(repeats=1)).measure(
            exports["bf16"], Recipe(precision="bf16"), Workload(128, 128, (8,)), work_dir=tmp_path / "w")


@pytest.mark.parametrize("scenario, error, words", [
    ("silent", GpuOutOfMemory, "without printing a report"),
    ("fail:oom_torch_issue_2398:1", GpuOutOfMemory, "kv_cache_free_gpu_mem_fraction"),
    ("fail:missing_tokenizer_transformers:1", ModelLoadError, "Export the calibrated model again"),
])
def test_benchmark_failures(exports, stand_in, monkeypatch, tmp_path, scenario, error, words):
    monkeypatch.setenv("FAKE_TRTLLM_SCENARIO", scenario)
    with pytest.raises(error, match=words):
        TensorRTLLMRuntime(BenchSettings(repeats=1)).measure(
            exports["fp8"], Recipe(precision="fp8"), DOCS_WORKLOAD, work_dir=tmp_path / "w")
    assert list((tmp_path / "w").glob("trtllm_bench_b1_r0.log"))  # the full output is kept


def test_engine_flow_builds_then_benchmarks(exports, stand_in, tmp_path):
    rt = TensorRTLLMRuntime(BenchSettings(repeats=1))
    ms = rt.measure(exports["int8_sq"], Recipe(precision="int8_sq"), Workload(2048, 128, (4,)),
                      work_dir=tmp_path / "w")
    # the docs sample report says nothing of INT8; the stand-in reads the built engine's config
    assert ms[0].provenance["trtllm"]["flow"] == "engine"
    build, bench = _calls(stand_in)
    assert build[0] == "trtllm-build" and "--weight_sparsity" not in build
    assert build[build.index("--max_batch_size") + 1] == "4"
    assert bench[bench.index("--backend") + 1] == "tensorrt"
    assert bench[bench.index("--engine_dir") + 1] == str(exports["int8_sq"].resolve() / export.ENGINE_DIR)
    assert bench[3].endswith(export.META_DIR)


def test_engine_flow_reports_unsupported_build(exports, stand_in, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_TRTLLM_BUILD_SCENARIO", "fail:unsupported_fp8_build_issue_1428:1")
    with pytest.raises(UnsupportedOnDevice, match="require hardware with FP8 support"):
        TensorRTLLMRuntime(BenchSettings(repeats=1)).measure(
            exports["int8_sq"], Recipe(precision="int8_sq"), Workload(2048, 128, (4,)), work_dir=tmp_path / "w")


def test_availability_reasons(stand_in, monkeypatch):
    rt = TensorRTLLMRuntime()
    assert rt.availability("fp8").ok
    monkeypatch.setattr(avail, "probe_gpu", lambda: dict(A100))
    a = TensorRTLLMRuntime().availability("fp8")
    assert not a.ok and "needs a Ada GPU or newer" in a.reason and "A100" in a.reason
    monkeypatch.setattr(avail, "probe_gpu", lambda: None)
    a = TensorRTLLMRuntime().availability("bf16")
    assert not a.ok and "no NVIDIA GPU" in a.reason
    monkeypatch.setattr(avail, "probe_gpu", lambda: dict(H100))
    monkeypatch.delenv("TLAB_TRTLLM_BUILD")
    monkeypatch.setenv("PATH", "/nonexistent")
    a = TensorRTLLMRuntime().availability("int8_sq")
    assert not a.ok and "trtllm-build" in a.reason and "1.2.x or older" in a.reason
    a = TensorRTLLMRuntime().availability("bf16", "magnitude")
    assert not a.ok and "2:4 magnitude" in a.reason


def test_unavailable_backend_refuses_to_benchmark(monkeypatch, tmp_path):
    monkeypatch.delenv("TLAB_TRTLLM_BENCH", raising=False)
    monkeypatch.setattr(avail, "tensorrt_llm_installed", lambda: False)
    with pytest.raises(UnsupportedOnDevice, match="not installed"):
        TensorRTLLMRuntime().measure(tmp_path, Recipe(), Workload(), work_dir=tmp_path / "w")


def test_speedup_between_two_stand_in_runs_uses_the_shared_rule(exports, stand_in, tmp_path):
    rt = TensorRTLLMRuntime(BenchSettings(repeats=2))
    base = rt.measure(exports["bf16"], Recipe(), Workload(2048, 128, (4,)), work_dir=tmp_path / "a")[0]
    cand = rt.measure(exports["fp8"], Recipe(precision="fp8"), Workload(2048, 128, (4,)), work_dir=tmp_path / "b")[0]
    # same replayed numbers on both sides: ratio exactly 1, and it is allowed (same device, workload)
    assert speedup(base, cand) == (pytest.approx(1.0), None)
