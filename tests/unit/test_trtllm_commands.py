"""trtllm-bench / trtllm-build command construction and the synthetic dataset."""

import json

import pytest

from engine.errors import DataError
from engine.runtimes.tensorrt_llm import commands, dataset


def _opts(cmd):
    """{--option: value} for an argv list (flags map to True)."""
    out, i = {}, 0
    while i < len(cmd):
        if cmd[i].startswith("--"):
            if i + 1 < len(cmd) and not cmd[i + 1].startswith("--"):
                out[cmd[i]] = cmd[i + 1]
                i += 2
                continue
            out[cmd[i]] = True
        i += 1
    return out


def test_throughput_command_fixes_the_batch_and_disables_eos():
    s = commands.BenchSettings(kv_cache_free_gpu_mem_fraction=0.8)
    cmd = commands.bench_command(["trtllm-bench"], model="meta-llama/Llama-3.1-8B", model_path="/x/hf",
                                 dataset="/x/ds.jsonl", report_json="/x/r.json", batch_size=8, settings=s)
    assert cmd[:5] == ["trtllm-bench", "--model", "meta-llama/Llama-3.1-8B", "--model_path", "/x/hf"]
    assert cmd[5] == "throughput"  # global options come before the subcommand
    o = _opts(cmd)
    assert o["--backend"] == "pytorch" and o["--dataset"] == "/x/ds.jsonl" and o["--report_json"] == "/x/r.json"
    assert o["--concurrency"] == "8" and o["--max_batch_size"] == "8" and o["--eos_id"] == "-1"
    assert o["--num_requests"] == "64" and o["--warmup"] == "8" and o["--kv_cache_free_gpu_mem_fraction"] == "0.8"
    assert o["--streaming"] is True and "--engine_dir" not in o


def test_batch_one_uses_the_latency_subcommand():
    cmd = commands.bench_command(["trtllm-bench"], model="m/x", model_path="/x", dataset="/d", report_json="/r",
                                 batch_size=1, settings=commands.BenchSettings(), extra_llm_api_options="/o.yml")
    o = _opts(cmd)
    assert "latency" in cmd and "throughput" not in cmd
    # latency fixes batch/concurrency to 1, ignores EOS itself and has none of these options
    for absent in ("--concurrency", "--max_batch_size", "--eos_id", "--streaming", "--extra_llm_api_options"):
        assert absent not in o
    assert o["--num_requests"] == "16"


def test_engine_flow_passes_backend_and_engine_dir():
    cmd = commands.bench_command(["trtllm-bench"], model="m/x", model_path="/meta", dataset="/d", report_json="/r",
                                 batch_size=4, settings=commands.BenchSettings(), backend="tensorrt",
                                 engine_dir="/eng")
    o = _opts(cmd)
    assert o["--backend"] == "tensorrt" and o["--engine_dir"] == "/eng"


@pytest.mark.parametrize("sparse", [True, False])
def test_build_command(sparse):
    cmd = commands.build_command(["trtllm-build"], checkpoint_dir="/c", output_dir="/e", max_batch_size=8,
                                 max_input_len=128, max_seq_len=192, sparse=sparse)
    o = _opts(cmd)
    assert o["--checkpoint_dir"] == "/c" and o["--output_dir"] == "/e" and o["--max_batch_size"] == "8"
    assert o["--max_input_len"] == "128" and o["--max_seq_len"] == "192" and o["--gemm_plugin"] == "auto"
    assert ("--weight_sparsity" in o) is sparse


def test_model_label_is_never_a_path(tmp_path):
    assert commands.model_label("meta-llama/Llama-3.1-8B") == "meta-llama/Llama-3.1-8B"
    assert commands.model_label(str(tmp_path / "my model")) == "local/my-model"
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "m").mkdir()
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # an "org/name" that exists as a folder here would be refused by trtllm-bench
        assert commands.model_label("org/m") == "local/m"
    finally:
        os.chdir(cwd)


def test_executable_override(monkeypatch):
    monkeypatch.setenv(commands.BENCH_ENV, "/opt/my bench/trtllm-bench")
    assert commands.bench_executable() == ["/opt/my", "bench/trtllm-bench"]  # shell words
    monkeypatch.setenv(commands.BENCH_ENV, "'/opt/my bench/trtllm-bench'")
    assert commands.bench_executable() == ["/opt/my bench/trtllm-bench"]


def test_synthetic_dataset_is_fixed_length_seeded_and_avoids_special_tokens(tmp_path):
    reqs = dataset.synthetic_requests(5, 32, 7, vocab_size=10, seed=3, avoid_ids={0, 2})
    assert [r["task_id"] for r in reqs] == list(range(5))
    assert all(len(r["input_ids"]) == 32 and r["output_tokens"] == 7 for r in reqs)
    assert not {0, 2} & {t for r in reqs for t in r["input_ids"]}
    assert all(0 <= t < 10 for r in reqs for t in r["input_ids"])
    assert reqs == dataset.synthetic_requests(5, 32, 7, vocab_size=10, seed=3, avoid_ids={0, 2})
    assert reqs != dataset.synthetic_requests(5, 32, 7, vocab_size=10, seed=4, avoid_ids={0, 2})
    path = dataset.write_dataset(tmp_path / "d.jsonl", reqs)
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0]) == reqs[0]
    assert set(json.loads(lines[0])) == {"task_id", "input_ids", "output_tokens"}


@pytest.mark.bad_input
def test_dataset_errors_are_plain():
    with pytest.raises(DataError, match="positive"):
        dataset.synthetic_requests(0, 8, 8, vocab_size=100)
    with pytest.raises(DataError, match="no ordinary tokens"):
        dataset.synthetic_requests(1, 8, 8, vocab_size=2, avoid_ids={0, 1})


def test_vocab_and_specials_from_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"vocab_size": 49152, "bos_token_id": 1,
                                                      "eos_token_id": [2, 7], "pad_token_id": None}))
    assert dataset.vocab_and_specials(tmp_path) == (49152, {1, 2, 7})
    with pytest.raises(DataError, match="missing"):
        dataset.vocab_and_specials(tmp_path / "nope")
