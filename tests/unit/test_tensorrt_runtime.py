"""TensorRTRuntime end to end at its boundary: a real ONNX export of a small diffusers UNet, then
trtexec replaced by a stand-in that replays REAL captured trtexec output (tests/fixtures/tensorrt)."""

import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("onnx")

from engine.errors import TlabError  # noqa: E402
from engine.runtimes.tensorrt import TensorRTRuntime, commands  # noqa: E402
from engine.runtimes.tensorrt.failures import OnnxParseError  # noqa: E402
from engine.spec import Recipe, Workload  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tensorrt"
GPU = {"name": "NVIDIA GeForce RTX 3070", "compute_capability": (8, 6), "index": 0}


@pytest.fixture(scope="module")
def unet():
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4, num_class_embeds=3).eval()


@pytest.fixture
def runtime(monkeypatch, tmp_path):
    monkeypatch.setenv(commands.TRTEXEC_ENV, f"{sys.executable} {FIXTURES / 'fake_trtexec.py'}")
    rt = TensorRTRuntime(device="cuda", settings=commands.TimingSettings(repeats=2, max_repeats=4),
                         work_dir=tmp_path / "trt")
    rt._gpu, rt._probed = dict(GPU), True  # no GPU here: the probe's answer is given
    return rt


def test_build_then_interleaved_timing_runs_give_the_logs_figures(runtime, unet, monkeypatch):
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", "fcn_resnet101_fp32_trt10.9_rtx3070.log")
    stages = []
    out = runtime.compare([(unet, Recipe("bf16")), (unet, Recipe("fp16"))], Workload(8, 20, (1, 4)),
                          lambda f, s: stages.append(s))
    assert [len(ms) for ms in out] == [2, 2]
    m = out[0][1]
    assert (m.backend, m.precision, m.batch_size, m.input_len, m.output_len) == ("tensorrt", "bf16", 4, 8, 20)
    # the replayed log's own figures, unchanged: GPU Compute Time median 111.208 ms, 8.66824 qps
    assert m.metrics["step_latency_ms"] == 111.208 and m.metrics["queries_per_sec"] == 8.66824
    assert m.repeats == 2 and m.spread["step_latency_ms"] == 0.0
    prov = m.provenance
    assert prov["kind"] == "measured" and prov["backend"] == "tensorrt" and prov["versions"]["tensorrt"] == "10.9.0"
    assert prov["device"]["name"] == "NVIDIA GeForce RTX 3070"
    build, timing = prov["command"].splitlines()
    assert "--saveEngine=" in build and "--bf16" in build and "--shapes=sample:4x1x8x8,timestep:1,class_labels:4" in build
    assert "--loadEngine=" in timing and timing.endswith("--useSpinWait")
    assert prov["workload"]["qdq_nodes"]["QuantizeLinear"] == 0
    folder = runtime.work_dir
    assert (folder / "bf16.onnx").is_file() and (folder / "fp16_bs4.plan").is_file()
    logs = sorted(p.name for p in folder.glob("*.log"))
    assert "build_bf16_bs1.log" in logs and "time_fp16_bs4_2.log" in logs
    assert any("building the BF16 TensorRT engine at batch 1" in s for s in stages)
    # rounds alternate: bf16 run 1, fp16 run 1, bf16 run 2, ...
    times = [s for s in stages if s.startswith("timing") and "batch 1 " in s]
    assert times[:2] == ["timing BF16 with trtexec at batch 1 (run 1)", "timing FP16 with trtexec at batch 1 (run 1)"]


def test_a_build_the_parser_rejects_stops_with_the_reason(runtime, unet, monkeypatch):
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", "qdq_parse_failure_trt8.4.3_issue2361.log")
    monkeypatch.setenv("FAKE_TRTEXEC_RC", "1")
    with pytest.raises(OnnxParseError, match="TensorRT 8.4.3 could not read the exported BF16 denoiser ONNX: "
                                            "onnx::QuantizeLinear_429: invalid weights type of Int8"):
        runtime.compare([(unet, Recipe("bf16"))], Workload(8, 20, (1,)))
    assert "&&&& FAILED" in (runtime.work_dir / "build_bf16_bs1.log").read_text()  # the output is kept


def test_no_trtexec_is_a_clear_error(monkeypatch, tmp_path, unet):
    monkeypatch.delenv(commands.TRTEXEC_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TlabError, match="^TensorRT cannot run here: the trtexec command is not on PATH"):
        TensorRTRuntime(device="cuda", work_dir=tmp_path).compare([(unet, Recipe("bf16"))], Workload(8, 20, (1,)))


def test_the_diffusion_sweep_records_tensorrt_speed(runtime, unet, monkeypatch):
    """engine.diffusion.sweep's TensorRT speed stage: baseline and INT8 timed through the runtime
    (replaying a real FP32 log for the baseline and a real INT8 log for the recipe), speedups taken
    on the GPU compute medians, provenance saying where the numbers came from."""
    from types import SimpleNamespace

    from engine.diffusion import sweep
    from engine.runtimes.tensorrt import availability as avail
    from engine.spec import GenerationSpec, ModelRef, SweepSpec

    monkeypatch.setattr(avail, "probe_gpu", lambda: dict(GPU))
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", "bf16=fcn_resnet101_fp32_trt10.9_rtx3070.log,"
                                           "int8_sq=int8_ptq_trt8.4.1_issue2158.log")
    monkeypatch.setenv("TLAB_HOME", str(runtime.work_dir.parent / "home"))
    spec = SweepSpec(model=ModelRef("bundled-diffusion"), recipes=(Recipe("int8_sq"),), kind="diffusion",
                     runtime="tensorrt", workload=Workload(16, 4, (2,)), device="cuda",
                     generation=GenerationSpec(labels=(1, 2), steps=4))
    exps = spec.experiments()
    results = [SimpleNamespace(metrics={}, units={}, provenance={}, timings={}) for _ in exps]
    saved = []
    ctx = SimpleNamespace(model=SimpleNamespace(unet=unet), gen=spec.generation, device="cuda")
    sweep._tensorrt_speed_stage(ctx, [(e, r, unet) for e, r in zip(exps, results)],
                                SimpleNamespace(save_result=saved.append), lambda f, s: None)
    base, int8 = results
    assert base.metrics["step_latency_ms_bs2"] == 111.208 and int8.metrics["step_latency_ms_bs2"] == 1.06393
    assert int8.metrics["speedup_bs2"] == int8.metrics["speedup"] == pytest.approx(111.208 / 1.06393)
    assert "speedup" not in base.metrics and saved == [base, int8]
    speed = int8.provenance["speed"]
    assert speed["kind"] == "measured" and speed["backend"] == "tensorrt" and speed["speedup_refused"] == {}
    assert "GPU Compute Time" in speed["method"]
    m = speed["measurements"][0]
    assert m["precision"] == "int8_sq" and "--int8 --fp16" in m["provenance"]["command"]


def test_the_sweep_exports_a_text_to_image_unet_for_its_tokenizers_prompt_length(runtime, monkeypatch):
    """A text-to-image model (conditioning "prompts"): the TensorRT stage exports its UNet with
    encoder_hidden_states of the tokenizer's model_max_length tokens, and the engines are built for it."""
    from types import SimpleNamespace

    import torch
    from diffusers import UNet2DConditionModel

    from engine.diffusion import sweep
    from engine.runtimes.tensorrt import availability as avail
    from engine.spec import GenerationSpec, ModelRef, SweepSpec

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
                                attention_head_dim=4, norm_num_groups=4).eval()
    monkeypatch.setattr(avail, "probe_gpu", lambda: dict(GPU))
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", "fcn_resnet101_fp32_trt10.9_rtx3070.log")
    monkeypatch.setenv("TLAB_HOME", str(runtime.work_dir.parent / "home"))
    spec = SweepSpec(model=ModelRef("bundled-diffusion"), recipes=(Recipe("int8_sq"),), kind="diffusion",
                     runtime="tensorrt", workload=Workload(8, 4, (2,)), device="cuda",
                     generation=GenerationSpec(labels=(1,), steps=4))
    exp = spec.experiments()[0]  # the baseline
    result = SimpleNamespace(metrics={}, units={}, provenance={}, timings={})
    model = SimpleNamespace(unet=unet, conditioning="prompts", tokenizer=SimpleNamespace(model_max_length=7))
    ctx = SimpleNamespace(model=model, gen=spec.generation, device="cuda")
    sweep._tensorrt_speed_stage(ctx, [(exp, result, unet)], SimpleNamespace(save_result=lambda r: None),
                                lambda f, s: None)
    m = result.provenance["speed"]["measurements"][0]
    assert "--shapes=sample:2x4x8x8,timestep:1,encoder_hidden_states:2x7x12" in m["provenance"]["command"]
    assert m["provenance"]["workload"]["onnx_dtype"] == "float32"
