import time

import pytest

from engine.data import load_documents, split_documents
from engine.errors import DataError, ModelLoadError
from engine.models.loader import resolve
from engine.spec import ModelRef
from tests.conftest import requires_bundled


@pytest.mark.bad_input
def test_missing_model_folder_says_what_to_give(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve(ModelRef(str(tmp_path / "nope")))


@pytest.mark.bad_input
def test_pickle_only_folder_is_refused(tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match="only pickled weights") as err:
        resolve(ModelRef(str(folder)))
    assert "safetensors" in str(err.value)


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no model weights"):
        resolve(ModelRef(str(tmp_path)))


def test_unreachable_hub_model_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from engine.models import load_model

    t0 = time.monotonic()
    with pytest.raises(ModelLoadError, match="(not in the local cache|not a model)"):
        load_model(ModelRef("someone-who-does-not-exist/no-such-model-xyz"))
    assert time.monotonic() - t0 < 30


@requires_bundled
def test_bundled_model_resolves_to_gguf():
    loc = resolve(ModelRef())
    assert loc.gguf_file.endswith(".gguf")
    assert loc.hf_id == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_bundled_corpus_splits_disjointly():
    docs = load_documents("bundled")
    calib, evaluation = split_documents(docs)
    assert len(calib) > 4 * len(evaluation) * 0.9
    assert not set(calib) & set(evaluation)
    assert len(calib) + len(evaluation) <= len(docs)


@pytest.mark.bad_input
def test_user_jsonl_and_bad_lines(tmp_path):
    good = tmp_path / "d.jsonl"
    good.write_text('{"text": "a"}\n{"text": "b"}\n')
    assert load_documents(str(good)) == ["a", "b"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(DataError, match="line 2"):
        load_documents(str(bad))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    with pytest.raises(DataError, match="no text"):
        load_documents(str(empty))


class _CharTokenizer:
    """One token per character: enough to test windowing without a real tokenizer."""

    def __call__(self, text, return_tensors=None):
        import torch

        class Out:
            input_ids = torch.tensor([[ord(c) % 256 for c in text]])

        return Out()


@pytest.mark.bad_input
def test_too_short_evaluation_text_is_an_error(tmp_path):
    from engine.data import prepare
    from engine.spec import DataSpec

    f = tmp_path / "short.txt"
    f.write_text("calibration paragraph " * 50 + "\n\n" + "eval")
    with pytest.raises(DataError, match="Lower --eval-tokens"):
        prepare(_CharTokenizer(), DataSpec(str(f), calib_size=2, calib_seq_len=16, eval_tokens=4096))


def test_windows_and_calibration_are_deterministic(tmp_path):
    from engine.data import prepare
    from engine.spec import DataSpec

    f = tmp_path / "t.txt"
    f.write_text("\n\n".join(f"paragraph {i} " * 20 for i in range(50)))
    spec = DataSpec(str(f), calib_size=3, calib_seq_len=32, eval_tokens=256, eval_seq_len=64)
    a, b = prepare(_CharTokenizer(), spec), prepare(_CharTokenizer(), spec)
    assert a.eval_ids.shape == (4, 64)
    assert all((x == y).all() for x, y in zip(a.calib, b.calib))


def test_calibration_batches_group_equal_lengths_in_order():
    import torch

    from engine.quantize import calibration_batches

    seqs = [torch.zeros(1, n, dtype=torch.long) for n in (64, 64, 64, 48, 48, 64)]
    groups = calibration_batches(seqs, 2)
    assert [[s.shape[1] for s in g] for g in groups] == [[64, 64], [64], [48, 48], [64]]
    assert [s for g in groups for s in g] == seqs  # every sequence once, in order
    assert all(torch.cat(g).shape[0] == len(g) for g in groups)


def test_hf_dataset_source_reads_a_local_dataset_folder(tmp_path, monkeypatch):
    """`hf:NAME:SPLIT` goes through datasets.load_dataset, the same call as for a hub id; here NAME is
    a local dataset folder (no hub at test time). Offline, a hub id fails with what to use instead."""
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "my_corpus"
    folder.mkdir()
    rows = [{"text": f"Paragraph {i} about calibration data."} for i in range(5)] + [{"text": "  "}]
    (folder / "train.jsonl").write_text("\n".join(__import__("json").dumps(r) for r in rows))
    docs = load_documents(f"hf:{folder}:train")
    assert docs == [r["text"] for r in rows[:5]]  # blank rows dropped, order kept
    with pytest.raises(DataError, match="hf:NAME:SPLIT"):
        load_documents("hf:only-a-name")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="Without internet use 'bundled'"):
        load_documents("hf:some-org/not-cached-anywhere:train")
