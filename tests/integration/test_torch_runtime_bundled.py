"""The bundled SmolLM2-135M (hidden 576, not a multiple of the INT4 block 128) through the PyTorch
runtime: modelopt calibrates it, the deployed kernels reproduce the calibrated model and time."""

import copy
import warnings

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # loads and calibrates the bundled model (minutes on 2 cores)


@pytest.fixture(scope="module")
def bundled():
    from engine.models.loader import load_model
    from engine.spec import ModelRef

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(ModelRef())


def _calibrated(bundled, precision, n_batches):
    from engine.quantize import apply_recipe
    from engine.spec import Recipe

    text = "The quick brown fox jumps over the lazy dog. " * 40
    ids = bundled.tokenizer(text, return_tensors="pt").input_ids[:, :128]
    calib = [ids[:, i * 16:] for i in range(n_batches)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return apply_recipe(copy.deepcopy(bundled.model), Recipe(precision), calib)


def _prompt(bundled):
    return bundled.tokenizer("Quantization trades accuracy for speed because", return_tensors="pt").input_ids


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


def _layer_io(model, ids):
    """Input and output of every quantized linear layer of the calibrated model on `ids`."""
    io, hooks = {}, []
    for name, mod in model.named_modules():
        if hasattr(mod, "weight_quantizer") and mod.weight_quantizer.is_enabled:
            hooks.append(mod.register_forward_hook(
                lambda m, a, out, name=name: io.__setitem__(name, (a[0].detach().clone(), out.detach().clone()))))
    _logits(model, ids)
    for h in hooks:
        h.remove()
    return io


def test_int8_bundled_deploys_exactly_and_measures(bundled):
    """Layer by layer, the fbgemm layers give the calibrated layers' outputs (differences come only
    from activations lying within float rounding of a .5 tie: fbgemm adds its zero point before
    rounding). End to end, such flips compound over 30 layers, so logits agree less tightly."""
    from engine.runtimes.torch.deploy import deploy
    from engine.runtimes.torch.runtime import TorchRuntime
    from engine.spec import Recipe, Workload

    model = _calibrated(bundled, "int8_sq", 2)
    deployed = deploy(model, "int8_sq", "cpu")
    ids = _prompt(bundled)
    io = _layer_io(model, ids)
    assert len(io) == 210
    rows_off, rows = 0, 0
    with torch.inference_mode():
        for name, (x, y) in io.items():
            err = (deployed.get_submodule(name)(x) - y).abs().amax(-1).flatten()  # per token
            assert err.max() <= 1e-2 * y.abs().max(), name
            rows_off += int((err > 1e-4 * y.abs().max()).sum())
            rows += err.numel()
    assert rows_off / rows < 0.1  # most tokens of most layers match to float rounding
    ref, got = _logits(model, ids), _logits(deployed, ids)
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.85
    assert (got - ref).abs().max() <= 0.1 * ref.abs().max()

    ms = TorchRuntime(device="cpu", warmup=1, repeats=2).measure(
        deployed, Recipe("int8_sq"), Workload(input_len=32, output_len=8, batch_sizes=(1,)))
    m = ms[0]
    assert m.metrics["decode_tokens_per_sec"] > 0 and m.provenance["kind"] == "measured"
    # 210 quantized layers run as 120 fbgemm calls: q/k/v and gate/up share one call each
    assert m.provenance["kernels"] == {"W8A8 (static activations), fbgemm": 120, "fused q_proj+k_proj+v_proj": 30,
                                       "fused gate_proj+up_proj": 30, "nn.Linear (float32)": 1}
    assert m.provenance["decode_loop"].startswith("lean Llama loop")
    # INT8 weights are about a quarter of float32 for the 210 quantized layers
    assert m.provenance["weights_mb"] < 250


def test_int4_bundled_uses_group_64_for_hidden_576(bundled):
    from engine.runtimes.torch import kernels as kernels
    from engine.runtimes.torch.deploy import deploy

    model = _calibrated(bundled, "int4_awq", 1)
    deployed = deploy(model, "int4_awq", "cpu")
    q_proj = deployed.model.layers[0].self_attn.q_proj
    down = deployed.model.layers[0].mlp.down_proj
    assert isinstance(q_proj, kernels.Int4Linear) and (q_proj.in_features, q_proj.group) == (576, 64)
    assert isinstance(down, kernels.Int4Linear) and (down.in_features, down.group) == (1536, 128)
    ids = _prompt(bundled)
    ref, got = _logits(model, ids), _logits(deployed, ids)
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
