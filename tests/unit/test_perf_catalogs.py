"""GPU and architecture catalogs: ids, sources, derived parameter counts, config.json loading."""

import json
import types

import pandas as pd
import pytest

from engine.errors import ModelLoadError, UnknownNameError
from engine.perf import arch, catalog
from engine.paths import asset

GPU_IDS = ["h100-sxm", "h100-pcie", "h200", "gh200", "a100-sxm-80gb", "a100-pcie-80gb", "l40s", "l4", "a10g",
           "rtx-4090", "rtx-6000-ada", "rtx-pro-6000-blackwell", "b200", "gb200"]
MODEL_IDS = ["meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf",
             "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B", "meta-llama/Llama-3.1-8B",
             "meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-405B", "meta-llama/Llama-3.3-70B-Instruct",
             "EleutherAI/gpt-j-6b", "mistralai/Mistral-7B-v0.1", "mistralai/Mixtral-8x7B-v0.1",
             "mistralai/Mixtral-8x22B-v0.1", "tiiuae/falcon-180B", "tiiuae/falcon-40b", "mosaicml/mpt-30b",
             "Qwen/Qwen2.5-7B", "Qwen/Qwen2.5-72B", "Qwen/Qwen3-8B", "google/gemma-2-9b", "google/gemma-2-27b",
             "microsoft/Phi-3-mini-4k-instruct", "HuggingFaceTB/SmolLM2-135M", "HuggingFaceTB/SmolLM2-1.7B"]


def test_gpu_catalog_has_every_id_with_a_source():
    gpus = catalog.gpus()
    assert set(GPU_IDS) <= set(gpus)
    for g in gpus.values():
        assert g.source.strip() and g.price_source.strip(), g.id
        assert g.memory_gb > 0 and g.bandwidth_tb_s > 0 and g.price_per_hour > 0
        assert g.peak("bf16") > 0


def test_gpu_formats_follow_the_hardware():
    # dense FP8 is twice dense BF16 on Hopper; Ampere has no FP8, Hopper no FP4, Blackwell has FP4
    h100 = catalog.gpu("h100-sxm")
    assert h100.peak("fp8") == pytest.approx(2 * h100.peak("bf16"), rel=0.01)
    assert catalog.gpu("a100-sxm-80gb").peak("fp8") is None
    assert h100.peak("fp4") is None and catalog.gpu("b200").peak("fp4") > 0
    assert {catalog.gpu(g).generation for g in ("b200", "gb200", "rtx-pro-6000-blackwell")} == {"blackwell"}


@pytest.mark.bad_input
def test_unknown_gpu_lists_close_matches():
    with pytest.raises(UnknownNameError, match="h100-sxm"):
        catalog.gpu("h100sxm")


def test_architecture_catalog_covers_the_required_models():
    assert set(MODEL_IDS) <= set(arch.catalog())
    raw = pd.read_csv(asset("architectures.csv"))
    assert raw["source"].notna().all()


@pytest.mark.parametrize("model_id, billions", [
    ("meta-llama/Llama-3.1-8B", 8.03), ("meta-llama/Llama-2-7b-hf", 6.74), ("meta-llama/Llama-3.1-70B", 70.55),
    ("mistralai/Mixtral-8x7B-v0.1", 46.70), ("Qwen/Qwen2.5-7B", 7.62), ("EleutherAI/gpt-j-6b", 6.05),
    ("tiiuae/falcon-180B", 179.5), ("meta-llama/Llama-3.1-405B", 405.8)])
def test_parameter_counts_match_the_model_cards(model_id, billions):
    # published totals (cards / stated_params); biases and norms are below 0.2%
    assert arch.resolve(model_id).total_params / 1e9 == pytest.approx(billions, rel=0.002)


def test_moe_activates_only_its_experts():
    m = arch.resolve("mistralai/Mixtral-8x7B-v0.1")
    assert m.is_moe and m.experts_per_token == 2
    assert 12.5e9 < m.active_params < 13.0e9  # "12.9B active" per Mistral's announcement


def test_gqa_and_mqa_kv_heads():
    assert arch.resolve("meta-llama/Llama-3.1-70B").kv_heads == 8
    assert arch.resolve("meta-llama/Llama-2-7b-hf").kv_heads == 32
    falcon7 = arch.from_config({"model_type": "falcon", "hidden_size": 4544, "num_hidden_layers": 32,
                                "num_attention_heads": 71, "multi_query": True, "vocab_size": 65024})
    assert falcon7.kv_heads == 1 and not falcon7.gated_mlp


def test_config_json_path_and_loaded_model(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
           "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 1000,
           "max_position_embeddings": 2048, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    a = arch.resolve(str(tmp_path))
    assert (a.hidden, a.kv_heads, a.head_dim, a.max_context) == (512, 2, 64, 2048)
    assert a.total_params == 4 * (512 * 512 * 2 + 2 * 512 * 128 + 3 * 512 * 1024) + 1000 * 512
    loaded = types.SimpleNamespace(config=types.SimpleNamespace(to_dict=lambda: cfg))
    assert arch.resolve(loaded).total_params == a.total_params
    assert arch.resolve("Llama-3.1-8B").name == "meta-llama/Llama-3.1-8B"  # organization optional


@pytest.mark.bad_input
def test_unknown_model_and_bad_config(tmp_path):
    with pytest.raises(UnknownNameError, match="meta-llama/Llama-3.1-8B"):
        arch.resolve("meta-llama/Llama-3.1-8")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError):
        arch.resolve(str(tmp_path / "config.json"))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit", "image_size": 224}))
    with pytest.raises(ModelLoadError, match="decoder-only"):
        arch.resolve(str(tmp_path / "config.json"))
