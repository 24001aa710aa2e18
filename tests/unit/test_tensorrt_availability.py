"""Where the TensorRT backend cannot run, and the sweep's refusal before any work (no GPU here)."""

import sys
from pathlib import Path

import pytest

from engine import registry
from engine.errors import SpecError, UnsupportedOnDevice
from engine.runtimes import available_runtimes, get_runtime
from engine.runtimes.base import Runtime
from engine.runtimes.tensorrt import availability as avail
from engine.runtimes.tensorrt import commands
from engine.spec import GenerationSpec, ModelRef, Recipe, SweepSpec, Workload

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "tensorrt" / "fake_trtexec.py"
A100 = {"name": "NVIDIA A100-SXM4-80GB", "compute_capability": (8, 0)}
H100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
T4 = {"name": "Tesla T4", "compute_capability": (7, 5)}


@pytest.fixture
def no_trtexec(monkeypatch, tmp_path):
    monkeypatch.delenv(commands.TRTEXEC_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no trtexec on PATH


@pytest.fixture
def with_trtexec(monkeypatch):
    monkeypatch.setenv(commands.TRTEXEC_ENV, f"{sys.executable} {FAKE}")


def test_without_trtexec_says_what_to_install(no_trtexec, monkeypatch):
    monkeypatch.setattr(avail, "tensorrt_python_version", lambda: None)
    a = avail.check("int8_sq", probe=lambda: pytest.fail("no GPU probe before the cheap checks pass"))
    assert not a and "trtexec command is not on PATH" in a.reason and "docs/tensorrt.md" in a.reason
    monkeypatch.setattr(avail, "tensorrt_python_version", lambda: "10.9.0.34")
    assert "tensorrt Python package 10.9.0.34 is installed, but its wheel has no trtexec" in avail.check("fp8").reason


def test_cpu_device_and_missing_pieces_are_named_together(no_trtexec, monkeypatch):
    monkeypatch.setattr(avail, "onnx_installed", lambda: False)
    reason = avail.check("bf16", device="cpu").reason
    assert "NVIDIA GPUs only" in reason and "trtexec" in reason and "pip install 'tradeoff-lab[diffusion]'" in reason


def test_precisions_it_does_not_build(with_trtexec):
    for name in ("int4_awq", "w4a8_awq", "nvfp4"):
        reason = avail.check(name, probe=lambda: H100).reason
        assert "builds diffusion denoisers in bf16, fp16, fp8, int8_sq" in reason and "tensorrt_llm" in reason
    assert "sparse" in avail.check("bf16", "sparsegpt", probe=lambda: H100).reason


def test_gpu_generation_and_tensorrt_version_decide(with_trtexec, monkeypatch):
    monkeypatch.setattr(avail, "tensorrt_python_version", lambda: None)
    assert not avail.check("bf16", probe=lambda: None)
    assert "no NVIDIA GPU found" in avail.check("bf16", probe=lambda: None).reason
    assert avail.check("int8_sq", probe=lambda: A100) and avail.check("fp16", probe=lambda: T4)
    fp8 = avail.check("fp8", probe=lambda: A100)
    assert not fp8 and "FP8 engines need a GPU of the Ada generation or newer (compute capability 8.9+); this is Ampere" in fp8.reason
    assert avail.check("fp8", probe=lambda: H100)
    assert "BF16 engines need a GPU of the Ampere generation" in avail.check("bf16", probe=lambda: T4).reason
    monkeypatch.setattr(avail, "tensorrt_python_version", lambda: "10.0.1")
    old = avail.check("fp8", probe=lambda: H100)
    assert not old and "needs TensorRT 10.2 or newer" in old.reason
    assert avail.check("int8_sq", probe=lambda: H100)  # INT8 Q/DQ from 9.2


def test_registered_for_diffusion_only():
    assert registry.runtime_name("trt") == "tensorrt"
    assert isinstance(get_runtime("tensorrt"), Runtime)
    built = {p.name for p in registry.PRECISIONS.values() if p.runs_on("tensorrt", "cuda")}
    assert built == {"bf16", "fp16", "fp8", "int8_sq"}
    assert not any(p.runs_on("tensorrt", "cpu") for p in registry.PRECISIONS.values())
    assert "tensorrt" in registry.model_kind("diffusion").runtimes
    assert "tensorrt" not in registry.model_kind("causal_lm").runtimes
    assert SweepSpec(recipes=(Recipe("int8_sq"),), kind="diffusion", runtime="trt").runtime == "tensorrt"
    with pytest.raises(SpecError, match="cannot time a language model"):
        SweepSpec(recipes=(Recipe("int8_sq"),), runtime="tensorrt")
    status = available_runtimes("int8_sq")
    assert "tensorrt" in status and isinstance(status["tensorrt"].reason, str)


def test_the_sweep_refuses_tensorrt_here_before_any_work(no_trtexec, monkeypatch):
    pytest.importorskip("diffusers")
    from engine.diffusion import bundled, sweep
    from engine.store import open_store

    monkeypatch.setattr(bundled, "load_bundled", lambda *a, **k: pytest.fail("the model must not load"))
    store = open_store()
    spec = SweepSpec(model=ModelRef("bundled-diffusion"), recipes=(Recipe("int8_sq"), Recipe("fp8")),
                     kind="diffusion", runtime="tensorrt", workload=Workload(16, 10, (8,)),
                     generation=GenerationSpec(labels=(1, 2), steps=4))
    with pytest.raises(UnsupportedOnDevice, match=r"^TensorRT cannot run here: ") as exc:
        sweep.run_diffusion_sweep(spec, store, lambda f, s: None)
    assert "trtexec command is not on PATH" in str(exc.value)
    assert store.list_results() == [] and store.list_experiments() == []
