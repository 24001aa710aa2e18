"""The PyTorch runtime deploys modelopt's calibrated weights to real kernels, exactly.

A tiny random Llama (hidden 192: not a multiple of modelopt's INT4 block of 128, like the bundled
model's 576) is calibrated by modelopt itself; the deployed model must hold the same integers and
give the same logits as the calibrated (fake-quantized) one.
"""

import pytest

torch = pytest.importorskip("torch")
mtq = pytest.importorskip("modelopt.torch.quantization")

from engine.errors import UnsupportedOnDevice
from engine.runtimes.torch import kernels as kernels
from engine.runtimes.torch import weights as tw
from engine.runtimes.base import Measurement
from engine.runtimes.torch.deploy import deploy
from engine.runtimes.torch.fuse import FusedLinear, SiblingSlice
from engine.runtimes.torch.runtime import TorchRuntime, cpu_availability, cuda_availability
from engine.spec import Recipe, Workload
from tests.helpers_quant import VOCAB, calibrate, tiny_llama

# fbgemm's INT8 kernel is exact only with AVX512-VNNI; elsewhere INT8 is refused (tested below), not timed
needs_exact_int8 = pytest.mark.skipif(kernels.int8_probe_exact() is not None,
                                      reason=str(kernels.int8_probe_exact()))


@pytest.fixture(scope="module")
def tiny():
    return tiny_llama(hidden=192, heads=3, kv_heads=1)


@pytest.fixture(scope="module")
def int8_model(tiny):
    return calibrate(tiny, mtq.INT8_SMOOTHQUANT_CFG)


@pytest.fixture(scope="module")
def int4_model(tiny):
    return calibrate(tiny, mtq.INT4_AWQ_CFG)


@pytest.fixture(scope="module")
def prompt():
    return torch.randint(0, VOCAB, (2, 40), generator=torch.Generator().manual_seed(2))


def _quant_linears(model):
    return [(n, m) for n, m in model.named_modules() if hasattr(m, "weight_quantizer") and m.weight_quantizer.is_enabled]


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits.float()


# --- the integer weights are modelopt's -------------------------------------------------------

def test_int8_integers_and_scales_reproduce_modelopt(int8_model):
    layers = _quant_linears(int8_model)
    assert len(layers) == 14  # 7 linear layers x 2 decoder layers; lm_head stays unquantized
    for name, layer in layers:
        w = tw.int_weights(layer)
        assert w.q.dtype == torch.int8 and w.block is None
        fake = layer.weight_quantizer(layer.weight.detach())
        assert torch.equal(w.dequantize(), fake), name


def _kernel_rows(deployed, name):
    """(kernel layer, its output rows that belong to `name`): fused siblings share one kernel."""
    module = deployed.get_submodule(name)
    if isinstance(module, SiblingSlice):
        start = sum(module.fused.sizes[:module.index])
        return module.fused.inner, slice(start, start + module.fused.sizes[module.index])
    return module, slice(None)


def test_int8_deployed_layer_packs_the_same_integers(int8_model):
    deployed = deploy(int8_model, "int8_sq", "cpu")
    for name, layer in _quant_linears(int8_model):
        kernel, rows = _kernel_rows(deployed, name)
        assert isinstance(kernel, kernels.Int8Linear)
        qweight, _ = kernel._packed.unpack()
        assert torch.equal(qweight.int_repr()[rows], tw.int_weights(layer).q), name
        pqs = layer.input_quantizer.pre_quant_scale.float().reshape(-1)
        assert torch.equal(kernel.pre_quant_scale, pqs)


def test_int4_blocks_padded_like_modelopt(int4_model):
    layers = _quant_linears(int4_model)
    assert len(layers) == 14
    for name, layer in layers:
        w = tw.int_weights(layer)
        assert w.block == 128 and w.q.min() >= -8 and w.q.max() <= 7
        assert w.scale.shape[1] == -(-layer.in_features // 128)  # 192 -> 2 blocks, the last one padded
        assert torch.equal(w.dequantize(), layer.weight_quantizer(layer.weight.detach()).float()), name


def test_int4_kernel_holds_modelopt_integers(int4_model):
    """Multiplying the packed kernel by the identity returns q * scale; dividing by the (bf16)
    scale gives back modelopt's integers exactly."""
    deployed = deploy(int4_model, "int4_awq", "cpu")
    for name, layer in _quant_linears(int4_model):
        kernel = deployed.get_submodule(name)
        assert isinstance(kernel, kernels.Int4Linear)
        k = kernel.in_features
        eye = torch.eye(k, dtype=torch.bfloat16)
        wt = torch.ops.aten._weight_int4pack_mm_for_cpu(eye, kernel.packed, kernel.group,
                                                        kernel.scales_and_zeros).float()  # [K, N]
        scale = kernel.scales_and_zeros[..., 0].float().repeat_interleave(kernel.group, 0)  # [K, N]
        q = torch.round(wt / scale).t().to(torch.int8)
        assert torch.equal(q, tw.int_weights(layer).q), name


def test_int4_kernel_group_fits_modelopt_blocks():
    assert kernels.int4_kernel_group(576, 128) == 64  # the bundled model's hidden size
    assert kernels.int4_kernel_group(1536, 128) == 128
    assert kernels.int4_kernel_group(100, 128) is None


def test_fp8_weights_reproduce_modelopt(tiny):
    """The FP8 path runs only on CUDA, but its weight conversion can be checked here."""
    model = calibrate(tiny, mtq.FP8_DEFAULT_CFG)
    for name, layer in _quant_linears(model):
        k8 = kernels.Fp8Linear(layer.weight.detach(), None, layer.weight_quantizer.amax,
                               layer.input_quantizer.amax, None, "cpu")
        assert k8.weight_fp8.dtype == torch.float8_e4m3fn
        assert torch.equal(k8.dequantized_weight(), layer.weight_quantizer(layer.weight.detach()).float()), name


# --- the deployed model computes what the calibrated model simulated -------------------------

@needs_exact_int8
def test_int8_static_logits_match_simulated(int8_model, prompt):
    ref = _logits(int8_model, prompt)
    got = _logits(deploy(int8_model, "int8_sq", "cpu", "static"), prompt)
    assert (got - ref).abs().max() <= 5e-3 * ref.abs().max()
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


def test_int8_dynamic_logits_close_to_simulated(int8_model, prompt):
    ref = _logits(int8_model, prompt)
    got = _logits(deploy(int8_model, "int8_sq", "cpu", "dynamic"), prompt)
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9
    assert (got - ref).abs().max() <= 0.3 * ref.abs().max()


def test_int4_logits_match_simulated(int4_model, prompt):
    ref = _logits(int4_model, prompt)
    got = _logits(deploy(int4_model, "int4_awq", "cpu"), prompt)
    # bf16 activations (the kernel's input type) are the only difference from the simulation
    assert (got - ref).abs().max() <= 2e-2 * ref.abs().max()
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.95


def test_deployed_model_has_no_modelopt_modules(int8_model):
    deployed = deploy(int8_model, "int8_sq", "cpu")
    assert not any("Quant" in type(m).__name__ for m in deployed.modules())
    assert type(deployed.lm_head) is torch.nn.Linear and deployed.lm_head.weight.dtype == torch.float32


def test_baseline_deploy_is_plain_fp32_copy(tiny, prompt):
    deployed = deploy(tiny, "bf16", "cpu")
    assert deployed is not tiny and next(deployed.parameters()).dtype == torch.float32
    # q/k/v and gate/up run as one matmul each: the same sums, in another order
    assert deployed.fused_groups == 2 * tiny.config.num_hidden_layers
    torch.testing.assert_close(_logits(deployed, prompt), _logits(tiny, prompt), rtol=1e-5, atol=1e-5)


# --- sibling fusion and the lean decode loop ------------------------------------------------------

def test_int8_siblings_fuse_to_the_same_outputs(int8_model):
    """modelopt's SmoothQuant gives q/k/v (and gate/up) one smoothing and activation scale, so one
    fused fbgemm call gives each sibling's output exactly."""
    from engine.runtimes.torch import handlers

    deployed = deploy(int8_model, "int8_sq", "cpu")
    attn = int8_model.model.layers[0].self_attn
    fused = deployed.model.layers[0].self_attn.qkv_proj
    assert isinstance(fused, FusedLinear) and isinstance(fused.inner, kernels.Int8Linear)
    x = torch.randn(3, 5, attn.q_proj.in_features, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        parts = [fused.parts(x)[i] for i in range(3)]  # as q_proj, k_proj and v_proj ask for them
        for part, name in zip(parts, ("q_proj", "k_proj", "v_proj")):
            alone = handlers.handler("int8_sq").build(getattr(attn, name), name, torch.device("cpu"),
                                                      handlers.DeployOptions("static"))
            assert torch.equal(part, alone(x)), name
        # q_proj's call serves k_proj and v_proj on the same input, then the fused layer lets go of it
        assert fused._x is None and fused._parts == ()
        first = fused.parts(x)
        assert fused.parts(x) is first and fused.parts(x) is first and fused._x is None


def test_int4_siblings_stay_apart(int4_model):
    """AWQ scales each sibling's input differently: fusing them would change the calibrated model."""
    deployed = deploy(int4_model, "int4_awq", "cpu")
    attn = deployed.model.layers[0].self_attn
    assert isinstance(attn.q_proj, kernels.Int4Linear) and not hasattr(attn, "qkv_proj")


@pytest.mark.parametrize("precision", ["bf16", "int8_sq", "int4_awq"])
def test_lean_loop_generates_transformers_tokens(precision, tiny, int8_model, int4_model):
    from engine.runtimes.torch.bench import prompt_ids, timed_generation

    source = {"bf16": tiny, "int8_sq": int8_model, "int4_awq": int4_model}[precision]
    deployed = deploy(source, precision, "cpu")
    assert deployed.decode_loop == "lean" and deployed.decode_loop_note is None
    ids = prompt_ids(VOCAB, 2, 24, 0, "cpu")
    _, lean = timed_generation(deployed, ids, 12)
    deployed.decode_loop = "transformers"
    _, reference = timed_generation(deployed, ids, 12)
    assert torch.equal(lean, reference)


def test_lean_loop_refused_where_it_would_differ(tiny):
    """A model whose MLP activation is not the SiLU its config names: the check catches the difference
    and the model is timed with transformers' forward, with the reason recorded."""
    from engine.runtimes.torch.deploy import choose_decode_loop

    odd = deploy(tiny, "bf16", "cpu")
    for layer in odd.model.layers:
        layer.mlp.act_fn = torch.nn.GELU()
    loop, why = choose_decode_loop(odd)
    assert loop == "transformers" and "differ from transformers' at step 0" in why
    del odd.model.rotary_emb  # a model the loop cannot even run: timed with transformers, reason kept
    loop, why = choose_decode_loop(odd)
    assert loop == "transformers" and "not laid out like a Llama" in why
    asked = TorchRuntime(device="cpu", decode_loop="transformers").deploy(tiny, Recipe("bf16"))
    assert asked.decode_loop == "transformers"


def test_lean_loop_not_used_for_other_architectures():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from engine.runtimes.torch.bench import prompt_ids, timed_generation

    torch.manual_seed(0)
    cfg = Qwen3Config(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=32, vocab_size=VOCAB)
    deployed = deploy(Qwen3ForCausalLM(cfg).eval(), "bf16", "cpu")
    assert deployed.decode_loop == "transformers" and "qwen3" in deployed.decode_loop_note
    metrics, toks = timed_generation(deployed, prompt_ids(VOCAB, 1, 8, 0, "cpu"), 4)
    assert toks.shape == (1, 4) and metrics["decode_tokens_per_sec"] > 0


def test_deploy_refuses_wrong_precision_and_uncalibrated(int8_model, tiny):
    with pytest.raises(UnsupportedOnDevice, match="recipe says BF16"):
        deploy(int8_model, "bf16", "cpu")
    with pytest.raises(UnsupportedOnDevice, match="calibrate it first"):
        deploy(tiny, "int8_sq", "cpu")
    with pytest.raises(UnsupportedOnDevice, match="no FP8 kernels on cpu"):
        deploy(int8_model, "fp8", "cpu")


def test_deploy_refuses_quantizers_it_would_drop(tiny):
    from engine.quantize import modelopt_config

    model = calibrate(tiny, modelopt_config(Recipe("int8_sq", kv_cache="fp8")))
    with pytest.raises(UnsupportedOnDevice, match="cannot deploy"):
        deploy(model, "int8_sq", "cpu")


# --- availability -------------------------------------------------------------------------------

@pytest.mark.parametrize("precision", ["fp8", "w4a8_awq", "nvfp4"])
def test_no_fast_cpu_kernels_points_to_estimate(precision):
    a = cpu_availability(precision)
    assert not a and "not measurable on this device" in a.reason.lower() and "estimate" in a.reason


def test_cpu_sparsity_not_measured():
    a = cpu_availability("int8_sq", "magnitude")
    assert not a and "dense speed" in a.reason


@pytest.mark.parametrize("precision", ["bf16", "int8_sq", "int4_awq"])
def test_cpu_kernels_available_here(precision):
    a = cpu_availability(precision)
    if precision == "int8_sq" and kernels.int8_probe_exact():  # a CPU without AVX512-VNNI: refused, with why
        assert not a and "AVX512-VNNI" in a.reason
        return
    assert a, a.reason


def test_cuda_availability_by_compute_capability():
    assert not cuda_availability("fp8", "none", (8, 0), "A100")
    assert "8.9" in cuda_availability("fp8", "none", (8, 0), "A100").reason
    assert cuda_availability("fp8", "none", (9, 0), "H100")
    assert cuda_availability("int4_awq", "none", (8, 0), "A100")
    assert not cuda_availability("int4_awq", "none", (7, 5), "T4")
    assert not cuda_availability("int8_sq", "none", (9, 0), "H100")


def test_runtime_on_missing_cuda_explains():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    a = TorchRuntime(device="cuda").availability("bf16")
    assert not a and "no CUDA GPU" in a.reason


# --- measurement ----------------------------------------------------------------------------------

@needs_exact_int8
def test_benchmark_returns_one_measurement_per_batch(int8_model):
    rt = TorchRuntime(device="cpu", warmup=1, repeats=2)
    ms = rt.measure(int8_model, Recipe("int8_sq"), Workload(input_len=16, output_len=4, batch_sizes=(1, 2)))
    assert [m.batch_size for m in ms] == [1, 2]
    for m in ms:
        assert isinstance(m, Measurement) and m.backend == "torch" and m.precision == "int8_sq"
        assert (m.input_len, m.output_len) == (16, 4) and 2 <= m.repeats <= rt.max_repeats
        for key in ("prefill_ms", "ttft_ms", "tpot_ms", "decode_tokens_per_sec", "output_tokens_per_sec",
                    "request_latency_ms", "peak_memory_mb"):
            assert m.metrics[key] > 0, key
            assert m.spread[key] >= 0, key
        assert m.metrics["ttft_ms"] >= m.metrics["prefill_ms"]
        p = m.provenance
        assert p["kind"] == "measured" and p["backend"] == "torch" and p["device"]["kind"] == "cpu"
        assert p["device"]["name"] and p["device"]["cores"] >= 1 and p["versions"]["torch"] == torch.__version__
        assert p["workload"] == {"batch_size": m.batch_size, "input_len": 16, "output_len": 4}
        assert p["int8_activations"] == "static" and p["compute_dtype"] == "float32"
        assert any("fbgemm" in k for k in p["kernels"]) and p["kernels"]["fused q_proj+k_proj+v_proj"] == 2
        assert p["decode_loop"].startswith("lean Llama loop")
        assert Measurement.from_dict(m.to_dict()) == m


def test_benchmark_refuses_unmeasurable_recipe(int8_model):
    with pytest.raises(UnsupportedOnDevice, match="estimate"):
        TorchRuntime(device="cpu").measure(int8_model, Recipe("fp8"), Workload(8, 2, (1,)))


def test_generation_has_fixed_length_despite_eos(tiny):
    """No early stop: even when every generated token is the EOS token, all output_len are produced."""
    from engine.runtimes.torch.bench import prompt_ids, timed_generation

    model = deploy(tiny, "bf16", "cpu")
    ids = prompt_ids(VOCAB, 1, 8, 0, "cpu")
    _, first = timed_generation(model, ids, 2)
    model.config.eos_token_id = int(first[0, 0])
    model.generation_config.eos_token_id = int(first[0, 0])
    metrics, toks = timed_generation(model, ids, 6)
    assert toks.shape == (1, 6)
    assert metrics["decode_tokens_per_sec"] > 0


def test_repeats_must_allow_a_spread():
    with pytest.raises(ValueError):
        TorchRuntime(repeats=1)


@needs_exact_int8
def test_compare_gives_comparable_measurements(tiny, int8_model):
    from engine.runtimes.base import speedup

    rt = TorchRuntime(device="cpu", warmup=0, repeats=2)
    base, quant = rt.compare([(tiny, Recipe("bf16")), (int8_model, Recipe("int8_sq"))], Workload(8, 3, (1,)))
    assert base[0].provenance["compute_dtype"] == "float32" and "int8_activations" not in base[0].provenance
    ratio, why = speedup(base[0], quant[0], "decode_tokens_per_sec", max_spread=100.0)
    assert ratio is not None and ratio > 0, why
