"""The TensorRT path's ONNX export, for real on the CPU: the bundled digits UNet unquantized and after
modelopt INT8 SmoothQuant, as modelopt's diffusers example exports it (Q/DQ nodes for TensorRT)."""

import pytest

pytest.importorskip("diffusers")
onnx = pytest.importorskip("onnx")

import torch  # noqa: E402

from engine.runtimes.tensorrt.onnx_export import QDQ_OPS, export_denoiser  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from engine.diffusion.bundled import load_bundled
    from engine.diffusion.quantize import calibration_inputs, quantize

    model = load_bundled("cpu")
    calib = calibration_inputs(model.unet, model.scheduler, [3, 7], steps=3, seed=1)  # small: 3 denoiser calls
    int8 = quantize(model.unet, "int8_sq", calib)
    folder = tmp_path_factory.mktemp("onnx")
    return {"unet": model.unet, "int8": int8,
            "bf16": export_denoiser(model.unet, folder / "bf16.onnx"),
            "int8_sq": export_denoiser(int8, folder / "int8_sq.onnx")}


def test_baseline_has_no_qdq_and_int8_has_pairs(exported):
    base, int8 = exported["bf16"], exported["int8_sq"]
    assert set(base.qdq) == set(QDQ_OPS) and sum(base.qdq.values()) == 0 and not base.quantized
    assert int8.quantized
    assert int8.qdq["QuantizeLinear"] > 0 and int8.qdq["QuantizeLinear"] == int8.qdq["DequantizeLinear"]
    assert int8.qdq["TRT_FP8QuantizeLinear"] == 0  # INT8 uses the standard ops


def test_files_pass_the_onnx_checker_and_take_a_dynamic_batch(exported):
    for key in ("bf16", "int8_sq"):
        info = exported[key]
        model = onnx.load(str(info.path))
        onnx.checker.check_model(model)  # export_denoiser checked it too; a direct check here
        names = [i.name for i in model.graph.input]
        assert names == ["sample", "timestep", "class_labels"]
        sample = model.graph.input[0].type.tensor_type.shape.dim
        assert sample[0].dim_param == "batch" and [d.dim_value for d in sample[1:]] == [1, 16, 16]
        assert model.graph.output[0].name == "noise_pred"
    assert exported["int8_sq"].shapes(8) == {"sample": (8, 1, 16, 16), "timestep": (1,), "class_labels": (8,)}


def test_quantized_layers_are_the_ones_modelopt_quantized(exported):
    """Every Conv/Gemm/MatMul weight input that goes through a DequantizeLinear belongs to a layer
    whose modelopt weight quantizer is on; the layers kept in high precision (conv_in, conv_out,
    time embedding, shortcuts) export none."""
    model = onnx.load(str(exported["int8_sq"].path))
    enabled = [name for name, m in exported["int8"].named_modules()
               if name.endswith("weight_quantizer") and getattr(m, "is_enabled", False)]
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    quantized_compute = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")
                         and any(i in dq_outputs for i in n.input)]
    assert enabled and len(quantized_compute) >= len(enabled) // 2  # weights and activations each get a DQ
    hp = [n.name for n in quantized_compute if "conv_in" in n.name or "conv_out" in n.name]
    assert hp == []


def test_the_int8_onnx_still_computes_what_the_quantized_model_does(exported):
    """The exported file is the quantized model, not a stub: ONNX's reference evaluator on it
    gives the fake-quantized PyTorch output."""
    from onnx import version_converter
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(0)
    x = torch.randn(2, 1, 16, 16)
    t = torch.tensor([500])
    y = torch.tensor([3, 7])
    with torch.no_grad():
        want = exported["int8"](x, t, class_labels=y).sample.numpy()
    # onnx's reference evaluator implements DequantizeLinear from opset 19 on; the graph is converted
    # in memory (the file TensorRT gets stays at opset 17)
    model = version_converter.convert_version(onnx.load(str(exported["int8_sq"].path)), 19)
    got = ReferenceEvaluator(model).run(
        None, {"sample": x.numpy(), "timestep": t.numpy(), "class_labels": y.numpy()})[0]
    err = abs(got - want).max() / (abs(want).max() + 1e-9)
    assert err < 0.05, err


def test_fp8_exports_its_attention_from_a_16_bit_copy_and_leaves_the_model_alone(tmp_path):
    """The FP8 recipe quantizes attention too; modelopt exports that only with 16-bit Q/DQ, so the file is
    written from a float16 copy (as modelopt's diffusers example exports FP8) and the model keeps its
    float32 weights and its quantizers."""
    from engine.diffusion.bundled import load_bundled
    from engine.diffusion.quantize import calibration_inputs, quantize

    model = load_bundled("cpu")
    fp8 = quantize(model.unet, "fp8", calibration_inputs(model.unet, model.scheduler, [3], steps=2, seed=1))
    info = export_denoiser(fp8, tmp_path / "fp8.onnx")
    assert info.qdq["TRT_FP8QuantizeLinear"] > 0 and info.qdq["QuantizeLinear"] == 0
    assert info.dtype == "float16" and info.note is None
    assert all(m.is_enabled for n, m in fp8.named_modules() if n.endswith("q_bmm_quantizer"))
    assert next(fp8.parameters()).dtype == torch.float32
