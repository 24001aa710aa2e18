"""The TensorRT path's ONNX export of a text-conditioned UNet (UNet2DConditionModel, as in Stable
Diffusion), for real on the CPU: the tiny StableDiffusionPipeline of tests/diffusion_tiny.py, its UNet
unquantized, INT8 SmoothQuant and FP8 (attention included, from a 16-bit copy)."""

import copy
from types import SimpleNamespace

import pytest

pytest.importorskip("diffusers")
onnx = pytest.importorskip("onnx")

import torch  # noqa: E402

from engine.runtimes.tensorrt import onnx_export  # noqa: E402
from engine.runtimes.tensorrt.onnx_export import (  # noqa: E402
    OnnxExportError, denoiser_inputs, export_denoiser, text_width, unsupported)
from tests import diffusion_tiny  # noqa: E402

INPUTS = ["sample", "timestep", "encoder_hidden_states"]


def _call(u, x, t, y):
    return u(x, t, encoder_hidden_states=y)


def _attention_modules(unet) -> int:
    return sum(1 for n, _ in unet.named_modules() if n.endswith(("attn1", "attn2")))


def _quantizer_state(unet) -> dict:
    return {n: (m.is_enabled, m.trt_high_precision_dtype) for n, m in unet.named_modules()
            if n.endswith("_quantizer")}


@pytest.fixture(scope="module")
def t2i(tmp_path_factory):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTokenizer

    from engine.diffusion.quantize import quantize

    folder = diffusion_tiny.text_to_image(tmp_path_factory.mktemp("t2i"))
    unet = UNet2DConditionModel.from_pretrained(str(folder / "unet")).float().eval()
    tokens = CLIPTokenizer.from_pretrained(str(folder / "tokenizer")).model_max_length  # 16 in the tiny pipeline
    torch.manual_seed(0)
    calib = [(torch.randn(2, 4, 8, 8), torch.tensor([t]), torch.randn(2, tokens, 16)) for t in (900, 400)]
    int8 = quantize(unet, "int8_sq", calib, call=_call)
    fp8 = quantize(unet, "fp8", calib, call=_call)
    before = {"fp8_state": _quantizer_state(fp8), "fp8_weights": copy.deepcopy(fp8.state_dict())}
    out = tmp_path_factory.mktemp("onnx")
    return {"unet": unet, "fp8": fp8, "tokens": tokens, "before": before,
            "bf16": export_denoiser(unet, out / "bf16.onnx", text_tokens=tokens),
            "int8_sq": export_denoiser(int8, out / "int8_sq.onnx", text_tokens=tokens),
            "fp8_file": export_denoiser(fp8, out / "fp8.onnx", text_tokens=tokens)}


def test_text_to_image_files_take_encoder_hidden_states_with_a_dynamic_batch(t2i):
    tokens = t2i["tokens"]
    for key in ("bf16", "int8_sq", "fp8_file"):
        info = t2i[key]
        model = onnx.load(str(info.path))
        onnx.checker.check_model(model)
        assert [i.name for i in model.graph.input] == INPUTS
        dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
        assert dims["sample"] == ["batch", 4, 8, 8] and dims["encoder_hidden_states"] == ["batch", tokens, 16]
        assert info.shapes(3) == {"sample": (3, 4, 8, 8), "timestep": (1,), "encoder_hidden_states": (3, tokens, 16)}
    assert t2i["bf16"].dtype == t2i["int8_sq"].dtype == "float32"


def test_quantized_text_to_image_files_carry_qdq_nodes(t2i):
    base, int8, fp8 = t2i["bf16"], t2i["int8_sq"], t2i["fp8_file"]
    assert sum(base.qdq.values()) == 0
    assert int8.qdq["QuantizeLinear"] > 0 and int8.qdq["QuantizeLinear"] == int8.qdq["DequantizeLinear"]
    assert int8.qdq["TRT_FP8QuantizeLinear"] == 0
    assert 0 < fp8.qdq["TRT_FP8QuantizeLinear"] == fp8.qdq["TRT_FP8DequantizeLinear"]
    assert fp8.qdq["QuantizeLinear"] == 0


def test_fp8_attention_is_in_the_16_bit_file(t2i, tmp_path):
    """Each attention gets 4 FP8 Q/DQ pairs more than the float32 export without attention quantizers
    (q, k, v and the softmax output, modelopt's FP8 SDPA), and every softmax feeds an FP8 quantize."""
    fp8 = t2i["fp8_file"]
    assert fp8.dtype == "float16" and fp8.note is None
    no_attention = copy.deepcopy(t2i["fp8"])
    for n, m in no_attention.named_modules():
        if n.endswith(onnx_export.ATTENTION_QUANTIZERS):
            m.disable()
    float32 = export_denoiser(no_attention, tmp_path / "fp8_no_attention.onnx", text_tokens=t2i["tokens"])
    assert float32.dtype == "float32"
    attentions = _attention_modules(t2i["fp8"])
    assert attentions == 8  # the tiny UNet: 4 transformer blocks, self- and cross-attention each
    assert fp8.qdq["TRT_FP8QuantizeLinear"] - float32.qdq["TRT_FP8QuantizeLinear"] == 4 * attentions

    graph = onnx.load(str(fp8.path)).graph
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def feeds_fp8_quantize(node, hops=2):  # through the Casts modelopt puts around its 16-bit Q/DQ
        for c in (c for out in node.output for c in consumers.get(out, [])):
            if c.op_type == "TRT_FP8QuantizeLinear":
                return True
            if hops and c.op_type == "Cast" and feeds_fp8_quantize(c, hops - 1):
                return True
        return False

    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == attentions and all(feeds_fp8_quantize(n) for n in softmaxes)


def test_the_callers_model_is_unchanged_by_the_export(t2i):
    fp8 = t2i["fp8"]
    assert next(fp8.parameters()).dtype == torch.float32 and not fp8.training
    state = _quantizer_state(fp8)
    assert state == t2i["before"]["fp8_state"]
    assert any(on for on, _ in state.values()) and {dtype for _, dtype in state.values()} == {"Float"}
    after = fp8.state_dict()
    assert all(torch.equal(after[k], v) for k, v in t2i["before"]["fp8_weights"].items())


def test_the_baseline_onnx_computes_what_the_unet_does(t2i):
    """onnxruntime is not a dependency; ONNX's reference evaluator runs the float32 file, at a batch size
    other than the traced one."""
    from onnx.reference import ReferenceEvaluator

    torch.manual_seed(1)
    x, t, h = torch.randn(3, 4, 8, 8), torch.tensor([300]), torch.randn(3, t2i["tokens"], 16)
    with torch.no_grad():
        want = t2i["unet"](x, t, encoder_hidden_states=h).sample.numpy()
    got = ReferenceEvaluator(onnx.load(str(t2i["bf16"].path))).run(
        None, {"sample": x.numpy(), "timestep": t.numpy(), "encoder_hidden_states": h.numpy()})[0]
    assert abs(got - want).max() / abs(want).max() < 1e-4


def test_a_failing_16_bit_export_falls_back_to_float32_and_says_why(t2i, tmp_path, monkeypatch):
    """A float16 copy whose quantizers still export float32 Q/DQ: modelopt's own refusal, kept in the note."""
    monkeypatch.setattr(onnx_export, "sixteen_bit_copy", lambda unet: copy.deepcopy(unet).half())
    info = export_denoiser(t2i["fp8"], tmp_path / "fp8.onnx", text_tokens=t2i["tokens"])
    assert info.dtype == "float32" and info.qdq["TRT_FP8QuantizeLinear"] > 0
    assert info.note.startswith("FP8 attention (32 quantizers) not exported: the 16-bit export that carries it failed")
    assert "the qdqs must be in 16 bits" in info.note
    assert _quantizer_state(t2i["fp8"]) == t2i["before"]["fp8_state"]  # re-enabled after the float32 export


def _tiny_unet(**config):
    from diffusers import UNet2DConditionModel

    base = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16, attention_head_dim=4,
                norm_num_groups=8)
    return UNet2DConditionModel(**{**base, **config}).eval()


def test_an_sdxl_style_unet_exports_its_added_conditions(tmp_path):
    """SDXL's UNet also takes the pooled text embeddings and 6 size/crop time ids (added_cond_kwargs):
    the file has them as inputs with a dynamic batch and computes what the UNet does."""
    from onnx.reference import ReferenceEvaluator

    unet = _tiny_unet(addition_embed_type="text_time", addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=12 + 6 * 8)
    info = export_denoiser(unet, tmp_path / "sdxl.onnx", text_tokens=5)
    assert info.inputs == {"sample": (4, 8, 8), "timestep": (), "encoder_hidden_states": (5, 16),
                           "text_embeds": (12,), "time_ids": (6,)}
    assert info.shapes(3)["time_ids"] == (3, 6) and info.shapes(3)["timestep"] == (1,)
    torch.manual_seed(2)
    x, t, h, pooled = torch.randn(3, 4, 8, 8), torch.tensor([300]), torch.randn(3, 5, 16), torch.randn(3, 12)
    ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * 3)
    with torch.no_grad():
        want = unet(x, t, encoder_hidden_states=h, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
    got = ReferenceEvaluator(onnx.load(str(info.path))).run(None, {
        "sample": x.numpy(), "timestep": t.numpy(), "encoder_hidden_states": h.numpy(), "text_embeds": pooled.numpy(),
        "time_ids": ids.numpy()})[0]
    assert abs(got - want.numpy()).max() / abs(want.numpy()).max() < 1e-4


@pytest.mark.bad_input
def test_an_sdxl_style_config_without_its_sizes_is_refused():
    cfg = SimpleNamespace(addition_embed_type="text_time", addition_time_embed_dim=None,
                          projection_class_embeddings_input_dim=None, cross_attention_dim=16)
    assert "addition_time_embed_dim and projection_class_embeddings_input_dim" in unsupported(cfg)


@pytest.mark.bad_input
def test_per_block_cross_attention_widths_are_refused_unless_they_agree(tmp_path):
    with pytest.raises(OnnxExportError, match=r"cross_attention_dim differs per block \(16, 32\)"):
        export_denoiser(_tiny_unet(down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                                   up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                                   cross_attention_dim=(16, 32)), tmp_path / "x.onnx")
    same = _tiny_unet(down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=(16, 16))
    inputs = denoiser_inputs(same, text_tokens=5)
    assert inputs["encoder_hidden_states"].shape == (2, 5, 16)
    with torch.no_grad():
        assert same(**inputs).sample.shape == (2, 4, 8, 8)  # the example inputs fit the model


@pytest.mark.bad_input
def test_a_tokenizer_without_a_max_length_is_a_clear_error(tmp_path):
    with pytest.raises(OnnxExportError, match="text_tokens must be the number of tokens the tokenizer pads"):
        export_denoiser(_tiny_unet(), tmp_path / "x.onnx", text_tokens=int(1e30))  # transformers' "unset"


def test_what_the_config_asks_for():
    cfg = SimpleNamespace
    assert text_width(cfg(cross_attention_dim=768)) == 768
    assert text_width(cfg(cross_attention_dim=[1024, 1024])) == 1024
    assert text_width(cfg(cross_attention_dim=768, encoder_hid_dim=1024)) == 1024  # the UNet projects the text
    assert text_width(cfg(num_class_embeds=10)) is None  # UNet2DModel: no text
    assert unsupported(cfg(cross_attention_dim=768)) is None
    assert "added_cond_kwargs" in unsupported(cfg(addition_embed_type="text"))
    assert "image embeddings" in unsupported(cfg(encoder_hid_dim_type="image_proj"))
    assert "class_embed_type='timestep'" in unsupported(cfg(class_embed_type="timestep"))
