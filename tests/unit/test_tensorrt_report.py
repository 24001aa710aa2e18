"""trtexec's printed report and failures, read from real captured output (tests/fixtures/tensorrt/README.md)."""

from pathlib import Path

import pytest

from engine.errors import TlabError
from engine.runtimes.tensorrt.failures import GpuOutOfMemory, OnnxParseError, TrtexecRunError, classify_failure
from engine.runtimes.tensorrt.report import TrtexecReportError, parse_trtexec, to_measurement, version_from_banner

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tensorrt"


def _log(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_tensorrt_10_13_diffusion_transformer_summary():
    r = parse_trtexec(_log("qwen_image_dit_bf16_trt10.13.log"))
    # "GPU Compute Time: min = 1655.52 ms, max = 1673.94 ms, mean = 1666.2 ms, median = 1667.19 ms,
    #  percentile(90%) = 1672.56 ms, percentile(95%) = 1673.94 ms, percentile(99%) = 1673.94 ms"
    assert r.stats["gpu_compute"] == {"min": 1655.52, "max": 1673.94, "mean": 1666.2, "median": 1667.19,
                                      "p90": 1672.56, "p95": 1673.94, "p99": 1673.94}
    # "Latency: ..." is the host latency; "H2D Latency" / "D2H Latency" must not be taken for it
    assert r.stats["host_latency"]["median"] == 1667.89 and r.stats["host_latency"]["min"] == 1656.22
    assert r.throughput_qps == 0.562059
    assert r.tensorrt_version == "10.13.0" and r.status == "PASSED"  # from "[TensorRT v101300]"
    assert r.command.startswith("trtexec --onnx=transformer_step2.onnx --saveEngine=transformer_step2.plan --bf16")
    m = r.metrics()
    assert m["step_latency_ms"] == 1667.19 and m["gpu_compute_p99_ms"] == 1673.94 and m["queries_per_sec"] == 0.562059


def test_tensorrt_10_9_whole_run_gives_device_and_version():
    r = parse_trtexec(_log("fcn_resnet101_fp32_trt10.9_rtx3070.log"))
    assert r.stats["gpu_compute"] == {"min": 109.522, "max": 114.185, "mean": 111.557, "median": 111.208,
                                      "p90": 113.02, "p95": 114.115, "p99": 114.185}
    assert r.throughput_qps == 8.66824
    assert r.tensorrt_version == "10.9.0"  # the "TensorRT version: 10.9.0" line
    assert r.device_name == "NVIDIA GeForce RTX 3070" and r.compute_capability == (8, 6)
    # "Total GPU Compute Time: 3.23514 s" is a total in seconds, not the per-query summary
    assert r.metrics()["step_latency_ms"] == 111.208


def test_tensorrt_8_4_layout_with_only_the_99th_percentile():
    r = parse_trtexec(_log("int8_ptq_trt8.4.1_issue2158.log"))
    assert r.stats["gpu_compute"] == {"min": 1.04541, "max": 1.88818, "mean": 1.0693, "median": 1.06393, "p99": 1.2522}
    assert r.throughput_qps == 827.176
    assert r.tensorrt_version is None and r.status is None  # the excerpt has neither


@pytest.mark.parametrize("code, dotted", [("100900", "10.9.0"), ("101300", "10.13.0"), ("101303", "10.13.3"),
                                          ("8403", "8.4.3"), ("8401", "8.4.1"), ("8200", "8.2.0")])
def test_banner_version_codes(code, dotted):
    assert version_from_banner(code) == dotted


def test_a_failed_build_has_no_report_and_says_why():
    text = _log("qdq_parse_failure_trt8.4.3_issue2361.log")
    with pytest.raises(TrtexecReportError, match="no 'GPU Compute Time'"):
        parse_trtexec(text)
    err = classify_failure(1, text, precision="INT8 SmoothQuant")
    assert isinstance(err, OnnxParseError) and isinstance(err, TlabError)
    msg = str(err)
    assert "TensorRT 8.4.3" in msg  # read from "&&&& FAILED TensorRT.trtexec [TensorRT v8403]"
    assert "onnx::QuantizeLinear_429: invalid weights type of Int8" in msg  # the parser's own reason
    assert "9.2 or newer" in msg and "update TensorRT" in msg  # what to do
    # trtexec exits 1 there; the FAILED banner alone is enough to know
    assert isinstance(classify_failure(0, text), OnnxParseError)


@pytest.mark.parametrize("name", ["qwen_image_dit_bf16_trt10.13.log", "fcn_resnet101_fp32_trt10.9_rtx3070.log",
                                  "int8_ptq_trt8.4.1_issue2158.log"])
def test_passed_runs_are_not_failures(name):
    assert classify_failure(0, _log(name)) is None


def test_other_failures_keep_their_last_lines():
    assert isinstance(classify_failure(1, "[E] Error[2]: Requested amount of GPU memory (1073741824 bytes) "
                                          "could not be allocated."), GpuOutOfMemory)
    err = classify_failure(3, "line 1\nsomething else broke")
    assert isinstance(err, TrtexecRunError) and "exit status 3" in str(err) and "something else broke" in str(err)


def test_runs_become_one_measurement_with_provenance():
    a = parse_trtexec(_log("fcn_resnet101_fp32_trt10.9_rtx3070.log"))
    b = parse_trtexec(_log("qwen_image_dit_bf16_trt10.13.log"))
    m = to_measurement([a, a, a], precision="int8_sq", batch_size=8, input_len=16, output_len=20,
                       device={"kind": "cuda", "name": a.device_name}, versions={"modelopt": "x"},
                       command="trtexec --loadEngine=e.plan")
    assert m.backend == "tensorrt" and m.repeats == 3 and m.metrics["step_latency_ms"] == 111.208
    assert m.spread["step_latency_ms"] == 0.0  # identical runs
    assert m.provenance["kind"] == "measured" and m.provenance["backend"] == "tensorrt"
    assert m.provenance["versions"] == {"modelopt": "x", "tensorrt": "10.9.0"}
    assert m.provenance["command"] == "trtexec --loadEngine=e.plan"
    two = to_measurement([a, b], precision="bf16", batch_size=1, input_len=16, output_len=20, device={},
                         versions={}, command="c")
    assert two.spread["step_latency_ms"] > 0.10  # 111 ms vs 1667 ms: a speedup on it would be refused
    with pytest.raises(TrtexecReportError):
        to_measurement([], precision="bf16", batch_size=1, input_len=1, output_len=1, device={}, versions={}, command="")
