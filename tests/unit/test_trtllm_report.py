"""Parsing trtllm-bench --report_json, using reports rebuilt from published TensorRT-LLM output
(sources in tests/fixtures/trtllm/README.md)."""

import json
from pathlib import Path

import pytest

from engine.runtimes.tensorrt_llm.report import (
    ReportFormatError,
    check_lengths,
    parse_report,
    read_report,
)

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "trtllm"


def test_docs_sample_with_streaming_metrics():
    rep = read_report(FIX / "reports" / "docs_perf_overview_streaming.json")
    m = rep.metrics
    assert m["output_tokens_per_sec"] == 5530.7382
    assert m["output_tokens_per_sec_per_gpu"] == 5530.7382
    assert m["output_tokens_per_sec_per_user"] == 2.0563
    assert m["requests_per_sec"] == 43.2089
    assert m["total_tokens_per_sec"] == 94022.5497
    assert m["request_latency_ms"] == 75903.4456
    assert (m["request_latency_p50_ms"], m["request_latency_p90_ms"], m["request_latency_p99_ms"]) == \
        (78509.2102, 110804.0017, 111618.2158)
    assert m["ttft_ms"] == 52667.0339 and m["tpot_ms"] == 182.9639
    assert m["decode_tokens_per_sec_per_user"] == 5.4656
    assert (rep.num_requests, rep.avg_input_length, rep.avg_output_length) == (5000, 2048.0, 128.0)
    check_lengths(rep, 2048, 128)  # the workload it was run with: passes


def test_issue_6294_report_without_streaming():
    rep = read_report(FIX / "reports" / "issue_6294_h100_fp8_128_128.json")
    assert rep.metrics["output_tokens_per_sec"] == 6957.3030
    assert rep.metrics["requests_per_sec"] == 248.4751
    assert "ttft_ms" not in rep.metrics and "tpot_ms" not in rep.metrics  # not streamed
    assert rep.quantization == "FP8"


def test_run_that_stopped_early_is_refused():
    # Issue #6294: a 128/128 dataset that averaged 28 output tokens per request.
    rep = read_report(FIX / "reports" / "issue_6294_h100_fp8_128_128.json")
    with pytest.raises(ReportFormatError, match=r"28\.0 output tokens.*--eos_id -1"):
        check_lengths(rep, 128, 128)


def test_stdout_labels_are_not_needed():
    # The parser reads only the JSON; the two captured stdout layouts disagree on labels.
    a = (FIX / "outputs" / "docs_perf_overview_stdout.txt").read_text()
    b = (FIX / "outputs" / "issue_6294_stdout.txt").read_text()
    assert "Per GPU Output Throughput (tokens/sec/gpu)" in a and "Per GPU Output Throughput (tps/gpu)" in b


def test_unknown_layouts_fail_clearly(tmp_path):
    with pytest.raises(ReportFormatError, match="no 'performance' section"):
        parse_report({"engine": {}})
    with pytest.raises(ReportFormatError, match="system_output_throughput_tok_s"):
        parse_report({"performance": {"request_throughput_req_s": 1.0}})
    bad = tmp_path / "r.json"
    bad.write_text('{"performance": {')
    with pytest.raises(ReportFormatError, match="not valid JSON"):
        read_report(bad)
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ReportFormatError, match="not a JSON object"):
        read_report(bad)
