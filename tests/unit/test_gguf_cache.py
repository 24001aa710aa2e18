"""The converted copy of a GGUF model: the same tensors and tokens as converting, and only a shortcut."""

import os

import pytest

from tests.conftest import requires_bundled

pytestmark = requires_bundled


def _bundled_ref():
    from engine.spec import BUNDLED_MODEL, ModelRef

    return ModelRef(BUNDLED_MODEL)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("TLAB_CACHE", str(folder))
    return folder


def test_a_load_from_the_copy_gives_the_tensors_and_tokens_of_the_gguf(fresh_cache):
    import torch

    from engine.models import load_model

    converted = load_model(_bundled_ref())  # from the GGUF: keeps a copy
    (copy,) = fresh_cache.glob("gguf/*/model-float32")
    kept = load_model(_bundled_ref())
    assert kept.model.name_or_path == str(copy)  # really read from the copy
    a, b = converted.model.state_dict(), kept.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert kept.model.config.architectures == ["LlamaForCausalLM"]
    text = "def mean(xs):\n    return sum(xs) / len(xs)  # naïve"
    assert kept.tokenizer(text).input_ids == converted.tokenizer(text).input_ids
    assert (kept.tokenizer.pad_token, kept.facts) == (converted.tokenizer.pad_token, converted.facts)
    ids = converted.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(converted.model(ids).logits, kept.model(ids).logits)


def test_a_damaged_copy_is_converted_again(fresh_cache, _shared_cache, monkeypatch):
    import shutil

    from engine.models import load_model

    monkeypatch.setenv("TLAB_CACHE", str(_shared_cache))
    load_model(_bundled_ref())  # the suite's copy (converted once per run)
    shutil.copytree(_shared_cache / "gguf", fresh_cache / "gguf")
    monkeypatch.setenv("TLAB_CACHE", str(fresh_cache))
    (weights,) = fresh_cache.glob("gguf/*/model-float32/model.safetensors")
    weights.write_bytes(b"not a safetensors file")
    again = load_model(_bundled_ref())
    assert again.model.name_or_path != str(weights.parent)  # converted from the GGUF, not the damaged copy
    assert again.model.model.embed_tokens.weight.abs().sum() > 0


def test_an_unwritable_cache_only_costs_the_shortcut(tmp_path, monkeypatch):
    from engine.models.gguf_cache import load_tokenizer
    from engine.models.bundled import bundled_gguf

    blocked = tmp_path / "a file"
    blocked.write_text("the cache folder cannot be made below a file")
    monkeypatch.setenv("TLAB_CACHE", str(blocked / "cache"))
    folder, gguf = bundled_gguf()
    assert load_tokenizer(folder / gguf)("hello").input_ids
    assert blocked.read_text().startswith("the cache")


def test_an_edited_gguf_gets_its_own_copy(tmp_path, fresh_cache):
    from engine.models.bundled import bundled_gguf
    from engine.models.gguf_cache import copy_folder

    folder, gguf = bundled_gguf()
    mine = tmp_path / gguf
    os.symlink(folder / gguf, mine)  # resolves to the same file: the same copy
    assert copy_folder(mine, "tokenizer") == copy_folder(folder / gguf, "tokenizer")
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF")
    assert copy_folder(other, "tokenizer") != copy_folder(folder / gguf, "tokenizer")
    before = copy_folder(other, "tokenizer")
    os.utime(other, ns=(1, 1))
    assert copy_folder(other, "tokenizer") != before
