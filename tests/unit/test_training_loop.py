"""The training loop on a tiny random Llama: QAT keeps modelopt's quantizers, sparse fine-tuning keeps
the 2:4 mask exactly, and a stopped run resumes from its checkpoint to the very same weights."""

import copy
import json
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("modelopt.torch.quantization")

from engine.errors import TlabError
from engine.training import checkpoint, loop, recipes
from tests.helpers_quant import VOCAB, tiny_llama


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(hidden=192, heads=3, kv_heads=1)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    fixed = torch.randint(0, VOCAB, (2, 32), generator=g)
    calib = [torch.randint(0, VOCAB, (1, 32), generator=g) for _ in range(4)]
    return fixed, calib


def _varied(step, micro):  # a different batch per step, the same for a given step (as text.batch)
    return torch.randint(0, VOCAB, (2, 32), generator=torch.Generator().manual_seed(100 * step + micro))


def _amaxes(model):
    return {n: m.amax.detach().clone() for n, m in model.named_modules()
            if type(m).__name__ == "TensorQuantizer" and m.is_enabled and m.amax is not None}


def test_qat_lowers_the_loss_with_quantizers_in_place(tiny, data, tmp_path):
    fixed, calib = data
    q = recipes.quantize_for_qat(copy.deepcopy(tiny), "w4a8_awq", calib)
    before = recipes.quantizer_summary(q)
    assert before["enabled"] == before["calibrated"] == 28  # 14 linears x (INT4 + FP8) weight quantizers
    amax = _amaxes(q)
    out = loop.train(q, lambda s, m: fixed, loop.Schedule(4, 1e-3, 1), tmp_path)
    assert out.step == 4 and not out.stopped and out.tokens_seen == 4 * fixed.numel()
    assert out.losses[-1] < out.losses[0] - 0.5, out.losses
    assert recipes.quantizer_summary(q) == before
    after = _amaxes(q)
    assert after.keys() == amax.keys() and all(torch.equal(after[k], amax[k]) for k in amax)  # frozen scales
    # the model still computes through its fake quantizers: turning them off changes the logits
    import modelopt.torch.quantization as mtq

    with torch.no_grad():
        quantized = q(fixed).logits
        mtq.disable_quantizer(q, "*")
        assert not torch.allclose(quantized, q(fixed).logits)
    rows = loop.read_loss_log(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["loss"] == pytest.approx(out.losses[-1])


@pytest.mark.parametrize("method", ["magnitude", "sparsegpt"])
def test_sparse_fine_tuning_keeps_the_two_four_mask_exactly(tiny, data, tmp_path, method):
    fixed, calib = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = recipes.sparsify_for_training(copy.deepcopy(tiny), method, calib)
    masks = recipes.sparse_masks(s)
    assert len(masks) == 14 and all(int((~m).sum()) * 2 == m.numel() for m in masks.values())
    out = loop.train(s, lambda st, mi: fixed, loop.Schedule(3, 1e-3, 1), tmp_path)
    assert out.losses[-1] < out.losses[0]
    # modelopt keeps the mask by multiplying it in on every forward: the raw parameter is free to
    # move, but the weight the layer computes with stays zero wherever the mask prunes
    layer = s.get_submodule(next(iter(masks)))
    assert layer._weight_mask is not None and torch.equal(layer._weight_mask, masks[next(iter(masks))])
    assert bool((layer.weight.detach()[~masks[next(iter(masks))]] == 0).all())
    check = recipes.finish_sparse(s, masks)
    assert check == {"layers": 14, "zeros": sum(int((~m).sum()) for m in masks.values())}
    for name, mask in masks.items():  # after export: plain weights, zero exactly where the mask says
        w = s.get_submodule(name).weight.detach()
        assert bool((w[~mask] == 0).all()) and bool((w[mask] != 0).all()), name


def test_the_mask_check_catches_a_broken_pattern(tiny, data):
    s = recipes.sparsify_for_training(copy.deepcopy(tiny), "magnitude", data[1])
    masks = recipes.sparse_masks(s)
    s = recipes.finish_sparse(s, masks) and s
    name = next(iter(masks))
    with torch.no_grad():
        s.get_submodule(name).weight[~masks[name]] = 1.0
    with pytest.raises(TlabError, match="non-zero weights where its 2:4 mask prunes"):
        recipes.check_two_four(s, masks)


def test_a_stopped_run_resumes_at_its_checkpoint_step_to_the_same_weights(tiny, data, tmp_path):
    _, calib = data
    schedule = loop.Schedule(steps=5, learning_rate=1e-3, warmup=1, checkpoint_every=2)
    straight = recipes.quantize_for_qat(copy.deepcopy(tiny), "int8_sq", calib)
    whole = loop.train(straight, _varied, schedule, tmp_path / "straight")

    resumed = recipes.quantize_for_qat(copy.deepcopy(tiny), "int8_sq", calib)
    first = loop.train(resumed, _varied, schedule, tmp_path / "run", on_step=lambda i: i.step < 3)
    assert first.stopped and first.step == 3
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 3
    # the process dies here: a fresh model built the same way picks up at step 3
    again = recipes.quantize_for_qat(copy.deepcopy(tiny), "int8_sq", calib)
    seen = []
    second = loop.train(again, _varied, schedule, tmp_path / "run", on_step=lambda i: seen.append(i.step))
    assert second.resumed_from == 3 and seen == [4, 5] and second.step == 5
    assert second.tokens_seen == whole.tokens_seen
    assert second.losses == pytest.approx(whole.losses[3:], rel=1e-5)
    for (n, a), (_, b) in zip(straight.state_dict().items(), again.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), n
    assert [r["step"] for r in loop.read_loss_log(tmp_path / "run")] == [1, 2, 3, 4, 5]
    assert len(list((tmp_path / "run").glob("step-*"))) == 1  # only the newest checkpoint is kept


def test_a_checkpoint_of_another_model_is_refused(tiny, tmp_path):
    loop.train(copy.deepcopy(tiny), _varied, loop.Schedule(1, 1e-4, 0), tmp_path)
    other = tiny_llama(hidden=128, heads=2, kv_heads=1)
    with pytest.raises(TlabError, match="does not fit this model"):
        checkpoint.load_model_state(other, checkpoint.latest(tmp_path).folder)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.rglob("*.pt"))  # no pickle anywhere


def test_a_checkpoint_cut_short_by_a_kill_is_ignored(tiny, tmp_path):
    model = copy.deepcopy(tiny)
    loop.train(model, _varied, loop.Schedule(2, 1e-4, 0, checkpoint_every=2), tmp_path)
    partial = tmp_path / "step-000004"  # killed while writing: files there, latest.json not yet moved on
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"\0" * 10)
    (tmp_path / "loss.jsonl").open("a").write('{"step": 3, "loss": 1.0}\n{"step": 4, "lo')
    out = loop.train(copy.deepcopy(tiny), _varied, loop.Schedule(4, 1e-4, 0, checkpoint_every=2), tmp_path)
    assert out.resumed_from == 2 and out.step == 4
    assert [r["step"] for r in loop.read_loss_log(tmp_path)] == [1, 2, 3, 4]
