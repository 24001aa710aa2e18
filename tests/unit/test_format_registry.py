"""Every fact about a format lives on its registry entry; a backend adds one handler per format it runs.

The last test adds a precision the product does not ship, INT8 weight-only (W8A16), the way a
contributor would: one registry entry, plus one handler in the PyTorch backend that runs it on
PyTorch's real CPU kernel (`aten._weight_int8pack_mm`). Nothing else in the tree changes, yet the
spec, modelopt calibration, the estimator, the published-name lookup, availability, deployment and
measurement all take it.
"""

import dataclasses

import pytest
import torch
from torch import nn

from engine import registry
from engine.perf.estimate import Query, estimate
from engine.perf.params import PRIORS
from engine.quantize import modelopt_config
from engine.runtimes.torch import handlers
from engine.runtimes.torch import weights as tw
from engine.runtimes.torch.runtime import TorchRuntime
from engine.spec import Recipe, SweepSpec, Workload
from tests.helpers_quant import VOCAB, calibrate, tiny_llama


def test_each_backend_handles_exactly_what_the_registry_says_it_runs():
    for prec in registry.PRECISIONS.values():
        runs = bool(prec.kernels.get("torch"))
        if prec.is_baseline:
            assert handlers.handler(prec.name) is None  # nothing quantized: no kernel layer to build
        else:
            assert runs == (handlers.handler(prec.name) is not None), prec.name
        assert set(prec.kernels) <= set(registry.BACKENDS), prec.name


def test_format_facts_are_complete_and_consistent():
    for prec in registry.PRECISIONS.values():
        assert prec.compute_format in registry.COMPUTE_FORMATS
        assert {prec.weight_format, prec.activation_format, prec.kv_format} <= set(registry.NUMBER_FORMATS)
        assert 0 < prec.weight_bytes <= 2 and prec.weight_bytes >= prec.weight_bits / 8
        for group, kind in ((prec.estimator_weights, "m"), (prec.estimator_gemm, "c")):
            assert f"{kind}_{group}" in PRIORS, (prec.name, group)
        assert registry.precision_from_alias(prec.name) is prec
        for alias in prec.aliases:
            assert registry.precision_from_alias(alias) is prec
        assert prec.min_generation in registry.GENERATIONS


def test_names_that_differ_between_tables_resolve_to_one_entry():
    assert registry.runtime_name("pytorch") == registry.runtime_name("torch") == "torch"
    assert registry.sparsity_pattern("sparsegpt") == registry.sparsity_pattern("2:4") == "2:4"
    assert registry.sparsity_pattern("none") is registry.sparsity_pattern("dense") is None
    assert registry.precision_from_alias("INT4 AWQ (W4A16)").name == "int4_awq"


# --- a precision added the way a contributor would ------------------------------------------------

class Int8WeightOnlyLinear(nn.Module):
    """INT8 weights (modelopt's per-channel integers) x float activations on aten._weight_int8pack_mm."""

    def __init__(self, weights: tw.IntWeights, bias):
        super().__init__()
        self.register_buffer("q", weights.q.contiguous())
        self.register_buffer("scales", weights.dequant_scale.float().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.float(), requires_grad=False)

    def forward(self, x):
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, shape[-1]).float(), self.q, self.scales)
        y = y.reshape(*shape[:-1], -1)
        return y if self.bias is None else y + self.bias

    def weight_bytes(self) -> int:
        return self.q.numel() + 4 * self.scales.numel()

    def extra_repr(self) -> str:
        return f"{self.q.shape[1]}, {self.q.shape[0]}, INT8 weight-only (aten._weight_int8pack_mm)"


def _int8_wo_layer(module, name, device, options):
    w = tw.int_weights(module)
    tw.check_matches_modelopt(module, w, name)
    return Int8WeightOnlyLinear(w, module.bias.detach() if module.bias is not None else None)


INT8_WO = registry.Precision(
    "int8_wo", "INT8 weight-only", "INT8_WEIGHT_ONLY_CFG", 8, 16, "W8A16", "ampere", "pytorch",
    "int8", "bf16", "bf16", weight_bytes=1.0, estimator_weights="int8_sq", estimator_gemm="w16",
    aliases=("W8A16 (INT8 weights)",), kernels={"torch": ("cpu",), "tensorrt_llm": ("cuda",)},
    description="INT8 per-channel weights, 16-bit activations.")


@pytest.fixture
def int8_wo(monkeypatch):
    """The two additions: the registry entry and the PyTorch backend's handler."""
    monkeypatch.setitem(registry.PRECISIONS, "int8_wo", INT8_WO)
    monkeypatch.setitem(handlers.HANDLERS, "int8_wo",
                        handlers.KernelHandler(_int8_wo_layer, (Int8WeightOnlyLinear,)))
    return INT8_WO


def test_a_new_precision_needs_one_entry_and_one_handler(int8_wo):
    recipe = Recipe("int8_wo")
    assert recipe.label == "INT8 weight-only"
    spec = SweepSpec(recipes=(recipe,), workload=Workload(8, 3, (1,)), runtime="pytorch", device="cpu")
    assert SweepSpec.from_json(spec.to_json()) == spec
    assert registry.precision_from_alias("W8A16 (INT8 weights)") is int8_wo

    # The estimator: INT8 weight bytes with 16-bit GEMMs, through its parameter groups.
    q = dict(model="meta-llama/Llama-3.1-8B", gpu="h100-sxm", batch=1, isl=512, osl=128)
    new, bf16 = estimate(Query(precision="int8_wo", **q)), estimate(Query(precision="bf16", **q))
    assert new.weights_gib == pytest.approx(bf16.weights_gib / 2, rel=0.15)
    assert new.tpot_ms < bf16.tpot_ms  # decode streams half the bytes

    # modelopt calibrates it (its own config, named on the entry); the backend deploys it to the kernel.
    tiny = tiny_llama(hidden=192, heads=3, kv_heads=1)
    calibrated = calibrate(tiny, modelopt_config(recipe))
    rt = TorchRuntime(device="cpu", warmup=0, repeats=2)
    assert rt.availability("int8_wo"), rt.availability("int8_wo").reason
    deployed = rt.deploy(calibrated, recipe)
    layers = [m for m in deployed.modules() if isinstance(m, Int8WeightOnlyLinear)]
    assert len(layers) == 7 * tiny.config.num_hidden_layers
    ids = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        want = calibrated(ids).logits.float()
        got = deployed(ids).logits.float()
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    (m,) = rt.measure(deployed, recipe, Workload(8, 3, (1,)))
    assert m.precision == "int8_wo" and m.metrics["decode_tokens_per_sec"] > 0
    assert any("INT8 weight-only" in kind for kind in m.provenance["kernels"])


def test_a_precision_without_a_handler_is_explained_not_faked(int8_wo, monkeypatch):
    monkeypatch.delitem(handlers.HANDLERS, "int8_wo")
    why = TorchRuntime(device="cpu").availability("int8_wo")
    assert not why and "no INT8 weight-only handler" in why.reason and "estimate" in why.reason
    unlisted = dataclasses.replace(int8_wo, kernels={"tensorrt_llm": ("cuda",)})
    monkeypatch.setitem(registry.PRECISIONS, "int8_wo", unlisted)
    why = TorchRuntime(device="cpu").availability("int8_wo")
    assert not why and "no INT8 weight-only kernels on CPU" in why.reason
