"""`tlab estimate` contract: flags, --batch max, --input JSONL, errors as JSON with exit code 2."""

import json

import pytest

from engine.perf.cli import main

CONTRACT = ("output_tokens_per_sec", "output_tokens_per_sec_per_gpu", "ttft_ms", "tpot_ms", "fits_in_memory",
            "weights_gib", "max_batch_that_fits", "provenance")
BASE = ["estimate", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm", "--precision", "fp8",
        "--isl", "2048", "--osl", "128"]


def run(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_single_query_prints_one_json_object(capsys):
    rc, out, _ = run(capsys, *BASE, "--batch", "8", "--json")
    e = json.loads(out)
    assert rc == 0 and all(k in e for k in CONTRACT)
    assert e["provenance"] == "estimated" and e["batch"] == 8 and e["tp"] == 1
    assert e["output_tokens_per_sec"] == pytest.approx(e["output_tokens_per_sec_per_gpu"])


def test_tp_sparsity_and_batch_max(capsys):
    rc, out, _ = run(capsys, *BASE, "--batch", "max", "--tp", "2", "--sparsity", "2:4", "--json")
    e = json.loads(out)
    assert rc == 0 and e["sparsity"] == "2:4" and e["tp"] == 2
    assert 1 < e["batch"] <= e["max_batch_that_fits"] and e["fits_in_memory"]
    assert e["output_tokens_per_sec_per_gpu"] == pytest.approx(e["output_tokens_per_sec"] / 2, rel=1e-3)


def test_human_output_mentions_provenance(capsys):
    rc, out, _ = run(capsys, *BASE, "--batch", "1")
    assert rc == 0 and "[estimated]" in out and "calibrated from" in out


def test_input_jsonl_one_result_per_line(tmp_path, capsys):
    f = tmp_path / "q.jsonl"
    f.write_text("\n".join([
        json.dumps({"model": "meta-llama/Llama-3.1-8B", "gpu": "h200", "precision": "int4_awq", "batch": 1,
                    "isl": 2048, "osl": 128}),
        json.dumps({"model": "meta-llama/Llama-3.1-70B", "gpu": "h200", "precision": "bf16", "batch": 8,
                    "isl": 2048, "osl": 128, "tp": 2, "sparsity": None}),
        "",
        json.dumps({"model": "meta-llama/Llama-3.1-8B", "gpu": "a100-sxm-80gb", "precision": "fp8", "batch": 1,
                    "isl": 128, "osl": 128}),
        "{broken",
    ]))
    rc, out, _ = run(capsys, "estimate", "--input", str(f))
    lines = [json.loads(x) for x in out.strip().splitlines()]
    assert rc == 2 and len(lines) == 4
    assert lines[0]["precision"] == "int4_awq" and lines[1]["tp"] == 2
    assert all(k in lines[0] for k in CONTRACT)
    assert lines[2]["line"] == 4 and "Ampere" in lines[2]["error"]
    assert lines[3]["line"] == 5 and "not valid JSON" in lines[3]["error"]


@pytest.mark.parametrize("extra, match", [
    (["--gpu", "h100"], "Did you mean"), (["--precision", "nvfp4"], "Blackwell"),
    (["--batch", "0"], "positive whole number"),
    (["--batch", "1e12"], "beyond what any engine runs"), (["--batch", "1e308"], "beyond what any engine runs"),
    (["--batch", "inf"], "positive whole number"), (["--isl", "nan"], "positive whole number"),
])
@pytest.mark.bad_input
def test_errors_are_json_and_exit_2(capsys, extra, match):
    argv = BASE + ["--batch", "1", "--json"]
    for i in range(0, len(extra), 2):
        j = argv.index(extra[i])
        argv[j + 1] = extra[i + 1]
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and match in json.loads(out)["error"] and match in err


@pytest.mark.parametrize("price", ["-1", "nan", "inf"])
@pytest.mark.bad_input
def test_a_price_that_is_not_a_price_is_refused(capsys, price):
    rc, out, err = run(capsys, *BASE, "--batch", "1", "--price", price, "--json")
    assert rc == 2 and "price must be zero or more" in json.loads(out)["error"]


def test_model_too_big_reports_smallest_tp(capsys):
    rc, out, err = run(capsys, "estimate", "--model", "meta-llama/Llama-3.1-405B", "--gpu", "h100-sxm",
                       "--precision", "fp8", "--batch", "1", "--isl", "128", "--osl", "128", "--json")
    e = json.loads(out)
    assert rc == 0 and e["fits_in_memory"] is False and e["output_tokens_per_sec"] is None
    assert e["smallest_tp_that_fits"] == 8 and "smallest TP that fits is 8" in err


@pytest.mark.bad_input
def test_missing_flags_and_unknown_jsonl_fields(tmp_path, capsys):
    rc, out, _ = run(capsys, "estimate", "--model", "meta-llama/Llama-3.1-8B", "--json")
    assert rc == 2 and "missing" in json.loads(out)["error"]
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"model": "m", "gpu": "h200", "precision": "fp8", "batch": 1, "isl": 1, "osl": 1,
                             "tensor_parallel": 2}))
    rc, out, _ = run(capsys, "estimate", "--input", str(f))
    assert rc == 2 and "tensor_parallel" in json.loads(out)["error"]


def test_results_speed_on_a_gpu_adds_estimates_with_their_provenance(capsys, tmp_path, monkeypatch):
    from engine.store import open_store
    from tests.app.results_data import make_record

    monkeypatch.setenv("TLAB_HOME", str(tmp_path))
    model = "HuggingFaceTB/SmolLM2-135M-Instruct (bundled GGUF Q4_1)"
    open_store().save_results([make_record("x", p, i, model=model, with_speed=False)
                               for i, p in enumerate(["bf16", "fp8", "nvfp4"])])
    from engine.cli import main as tlab

    def run(capsys, *argv):
        rc = tlab(list(argv))
        out = capsys.readouterr()
        return rc, out.out, out.err

    rc, out, err = run(capsys, "results", "--speed-on", "h100-sxm", "--format", "json")
    rows = {r["precision"]: r for r in json.loads(out)}
    assert rc == 0 and rows["bf16"]["est_speedup"] == 1.0
    fp8 = rows["fp8"]
    assert fp8["est_speedup_low"] < fp8["est_speedup"] < fp8["est_speedup_high"]
    assert fp8["provenance_detail"]["speed_estimate"]["kind"] == "estimated"
    assert "h100-sxm" in fp8["provenance_detail"]["speed_estimate"]["engine"]
    assert rows["nvfp4"]["est_speedup"] is None and "Blackwell" in rows["nvfp4"]["provenance_detail"]["speed_estimate"]["engine"]
    assert open_store().get_result(rows["fp8"]["id"]).metrics.get("est_speedup") is None  # never stored
    rc, out, err = run(capsys, "results", "--speed-on", "h100")
    assert rc == 2 and "Did you mean" in err


@pytest.mark.bad_input
def test_one_bad_jsonl_line_never_stops_the_others(tmp_path, capsys):
    good = json.dumps({"model": "meta-llama/Llama-3.1-8B", "gpu": "h100-sxm", "precision": "fp8", "batch": 4,
                       "isl": 128, "osl": 128}).encode()
    path = tmp_path / "q.jsonl"
    path.write_bytes(b"\n".join([good, b"\xff\xfe not text", b"[" * 5000 + b"]" * 5000,
                                 good.replace(b'"batch": 4', b'"batch": 1e308'), good]) + b"\n")
    rc, out, err = run(capsys, "estimate", "--input", str(path))
    lines = [json.loads(x) for x in out.splitlines()]
    assert rc == 2 and len(lines) == 5
    assert "output_tokens_per_sec" in lines[0] and "output_tokens_per_sec" in lines[4]
    assert "not UTF-8" in lines[1]["error"] and "nested too deeply" in lines[2]["error"]
    assert "beyond what any engine runs" in lines[3]["error"]


def test_context_beyond_the_model_is_estimated_with_a_note(capsys):
    argv = BASE + ["--batch", "1", "--json"]
    argv[argv.index("--model") + 1] = "meta-llama/Llama-2-7b-hf"
    argv[argv.index("--isl") + 1] = "5000"
    rc, out, err = run(capsys, *argv)
    e = json.loads(out)
    assert rc == 0 and e["output_tokens_per_sec"] > 0 and "trained context of 4096" in e["message"]
    assert "trained context" in err


def test_band_states_its_nominal_level(capsys):
    rc, out, _ = run(capsys, *BASE, "--batch", "8", "--json")
    e = json.loads(out)
    assert rc == 0 and e["band_nominal"] == 0.8
    assert e["output_tokens_per_sec_low"] < e["output_tokens_per_sec"] < e["output_tokens_per_sec_high"]
    assert e["ttft_ms_low"] < e["ttft_ms"] < e["ttft_ms_high"]
    assert "80% interval" in e["provenance_detail"]["uncertainty"]
    rc, out, _ = run(capsys, *BASE, "--batch", "8")
    assert rc == 0 and "(80% band " in out
