"""Error messages for trtllm-bench / trtllm-build failures, from real captured output
(sources in tests/fixtures/trtllm/README.md)."""

from pathlib import Path

import pytest

from engine.errors import ModelLoadError, TlabError, UnsupportedOnDevice
from engine.runtimes.tensorrt_llm.failures import (
    GpuOutOfMemory,
    TrtllmRunError,
    classify_failure,
)

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "trtllm" / "outputs"


def _text(name):
    return (OUT / f"{name}.txt").read_text()


def test_success_is_not_an_error():
    assert classify_failure(0, _text("docs_perf_overview_stdout"), report_written=True) is None


@pytest.mark.parametrize("name", ["oom_torch_issue_2398", "oom_executor_issue_5872", "oom_cudamalloc_issue_401"])
def test_out_of_memory_suggests_kv_fraction_and_batch(name):
    err = classify_failure(1, _text(name), report_written=False, kv_fraction=0.9, batch_size=64)
    assert isinstance(err, GpuOutOfMemory) and isinstance(err, TlabError)
    msg = str(err)
    assert "kv_cache_free_gpu_mem_fraction" in msg and "now 0.9" in msg and "batch size (now 64)" in msg


def test_silent_exit_is_the_documented_oom_sign():
    err = classify_failure(0, "", report_written=False, kv_fraction=0.95)
    assert isinstance(err, GpuOutOfMemory) and "without printing a report" in str(err)


def test_unsupported_format_on_this_gpu():
    err = classify_failure(1, _text("unsupported_fp8_build_issue_1428"), report_written=False,
                           tool="trtllm-build", precision="fp8", gpu_name="NVIDIA A100-SXM4-80GB")
    assert isinstance(err, UnsupportedOnDevice)
    assert "fp8 on NVIDIA A100-SXM4-80GB" in str(err) and "require hardware with FP8 support" in str(err)


@pytest.mark.parametrize("name", ["missing_dataset_click", "missing_config_transformers",
                                  "missing_tokenizer_transformers"])
@pytest.mark.bad_input
def test_missing_model_files(name):
    err = classify_failure(2, _text(name), report_written=False)
    assert isinstance(err, ModelLoadError) and "Export the calibrated model again" in str(err)


def test_anything_else_shows_the_output_tail():
    out = "\n".join(f"line {i}" for i in range(40)) + "\nRuntimeError: something new"
    err = classify_failure(1, out, report_written=False)
    assert isinstance(err, TrtllmRunError)
    assert "exit status 1" in str(err) and "RuntimeError: something new" in str(err) and "line 0\n" not in str(err)
