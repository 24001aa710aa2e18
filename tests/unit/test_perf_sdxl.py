"""SDXL latency estimate (engine/perf/diffusion.py, diffusion_fit.py): work counted from a UNet/VAE config
agrees with torch's FLOP counter on diffusers models built from the same config; the published table is
read from the shipped file; each published cell's error is held out (its GPU not in the fit)."""

import csv
import math
import re

import pytest

from engine.errors import TlabError
from engine.paths import asset
from engine.perf import catalog
from engine.perf import diffusion as d
from engine.perf import diffusion_fit as fit

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

TINY_UNET = dict(  # SDXL's structure (text_time embedding, per-level transformer depth), small widths
    block_out_channels=[32, 64, 96], layers_per_block=2, transformer_layers_per_block=[1, 2, 3],
    cross_attention_dim=48, sample_size=16, in_channels=4, out_channels=4, attention_head_dim=[2, 4, 6],
    num_attention_heads=None, norm_num_groups=16,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 24,
    use_linear_projection=True)
TINY_SD = dict(  # SD 1.x-like: conv projections, every level with cross-attention, no added embedding
    block_out_channels=[32, 64], layers_per_block=1, cross_attention_dim=40, in_channels=4, out_channels=4,
    attention_head_dim=4, norm_num_groups=16, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], use_linear_projection=False)
TINY_VAE = dict(block_out_channels=[16, 32, 32], layers_per_block=2, latent_channels=4, out_channels=3,
                in_channels=3, norm_num_groups=8, down_block_types=["DownEncoderBlock2D"] * 3,
                up_block_types=["UpDecoderBlock2D"] * 3)


def _counted(module, call, *args, **kwargs) -> dict:
    """FLOPs by kind from torch.utils.flop_counter on a real forward pass (plain attention processor, so
    attention shows as baddbmm + bmm)."""
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    module.set_attn_processor(AttnProcessor())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        call(*args, **kwargs)
    by_op = {str(k).split(".")[-1]: v for k, v in counter.get_flop_counts()["Global"].items()}
    return {"conv": by_op.get("convolution", 0), "linear": by_op.get("addmm", 0) + by_op.get("mm", 0),
            "attn": by_op.get("bmm", 0) + by_op.get("baddbmm", 0)}


def _weights(module) -> int:
    """Conv and linear weight elements (biases and norm scales are not in the count)."""
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


@pytest.mark.parametrize("config,size,batch", [(TINY_UNET, (64, 96), 2), (TINY_SD, (64, 64), 3)])
def test_unet_work_matches_flop_counter(config, size, batch):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**config).eval()
    h, w = size[0] // 8, size[1] // 8
    kwargs = {}
    if config.get("addition_embed_type") == "text_time":
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(batch, 24), "time_ids": torch.randn(batch, 6)}
    got = _counted(unet, unet, torch.randn(batch, 4, h, w), torch.tensor([10.0] * batch),
                   torch.randn(batch, 7, config["cross_attention_dim"]), **kwargs)
    ops = d.unet_ops(config, batch=batch, height_px=size[0], width_px=size[1], tokens=7)
    mine = d.totals(ops)
    for kind in ("conv", "linear", "attn"):
        assert mine[kind] == pytest.approx(got[kind], rel=1e-9), kind
    assert mine["weights"] == _weights(unet)


def test_vae_decoder_work_matches_flop_counter():
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(**TINY_VAE).eval()
    got = _counted(vae, vae.decode, torch.randn(2, 4, 8, 8))
    mine = d.totals(d.vae_decoder_ops(TINY_VAE, batch=2, height_px=32, width_px=32))
    for kind in ("conv", "linear", "attn"):
        assert mine[kind] == pytest.approx(got[kind], rel=1e-9), kind
    assert mine["weights"] == _weights(vae.decoder) + _weights(vae.post_quant_conv)


def test_sdxl_unet_size_matches_diffusers_and_the_paper():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):  # shapes only: no 10 GB of weights
        unet = UNet2DConditionModel(**d.SDXL_UNET)
    ops = d.SDXL.unet_ops()
    total = d.totals(ops)
    assert total["weights"] == _weights(unet)
    assert total["weights"] == pytest.approx(2.6e9, rel=0.02)  # SDXL report, Table 1: 2.6B UNet parameters
    # Classifier-free guidance: each step runs two latents (conditional and unconditional).
    assert total["flops"] == pytest.approx(2 * d.totals(d.unet_ops(d.SDXL_UNET, batch=1))["flops"])


def test_quantized_layers_follow_modelopt_filter():
    names = {o.name: o for o in d.SDXL.unet_ops()}
    for skipped in ("conv_in", "conv_out", "time_embedding.linear_1", "add_embedding.linear_2",
                    "down_blocks.1.resnets.0.conv_shortcut", "down_blocks.1.resnets.0.time_emb_proj"):
        assert not names[skipped].quantizable, skipped
    assert names["down_blocks.2.attentions.0.transformer_blocks.9.ff.net.0.proj"].quantizable
    assert names["up_blocks.0.resnets.2.conv1"].quantizable
    assert not names["mid_block.attentions.0.transformer_blocks.0.attn1"].quantizable  # attention BMMs stay FP16
    # Every conv/linear op is a diffusers module of that name, and every such module is an op.
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**d.SDXL_UNET)
    modules = {n for n, m in unet.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert {n for n, o in names.items() if o.kind in ("conv", "linear")} == modules


def test_low_precision_only_on_gpus_with_the_tensor_cores():
    eff = d.Efficiency(0.5, 0.5, 0.5)
    table = d.OpTable(d.SDXL.unet_ops())
    ada = catalog.gpu("rtx-6000-ada")
    assert table.seconds(ada, "int8", eff).sum() < table.seconds(ada, "fp16", eff).sum()
    with pytest.raises(TlabError, match="no FP8 tensor cores.*fp16 or int8"):
        table.seconds(catalog.gpu("a100-sxm-80gb"), "fp8", eff)
    est = fit.catalog_estimates(eff)
    assert not ((est.gpu_id == "a100-sxm-80gb") & (est.precision == "fp8")).any()
    assert ((est.gpu_id == "a100-sxm-80gb") & (est.precision == "int8")).any()
    assert set(est.gpu_id) == set(catalog.gpus())


@pytest.mark.parametrize("config,kwargs,match", [
    ({"block_out_channels": [32]}, {}, "lacks"),
    (TINY_UNET, {"height_px": 100}, "multiple of 32 px"),
    (TINY_UNET, {"height_px": 16}, "multiple of 32 px"),
])
def test_unusable_configs_say_what_to_do(config, kwargs, match):
    with pytest.raises(TlabError, match=match):
        d.unet_ops(config, **kwargs)


def _table_rows() -> list[dict]:
    with open(asset("modelopt_benchmark_reference.csv"), newline="") as f:
        return [r for r in csv.DictReader(f) if r["table"] == "diffusion_ptq_perf"]


def test_published_cells_come_from_the_shipped_table():
    rows = _table_rows()
    pub = fit.published().set_index(["gpu", "precision"])
    assert len(rows) == 6 and len(pub) == 9  # INT8 and FP8 on three GPUs, plus FP16 derived per GPU
    for r in rows:
        speedup = float(re.search(r"speedup ([\d.]+)x", r["notes"]).group(1))
        cell = pub.loc[(r["gpu"], r["precision"].lower())]
        assert cell.latency_ms == float(r["value"]) and cell.speedup == speedup and not cell.derived
        assert cell.steps == 30 and cell.height_px == 1024
    for gpu in {r["gpu"] for r in rows}:
        fp16 = [float(r["value"]) * float(re.search(r"speedup ([\d.]+)x", r["notes"]).group(1))
                for r in rows if r["gpu"] == gpu]
        assert pub.loc[(gpu, "fp16")].latency_ms == pytest.approx(sum(fp16) / 2)
        assert pub.loc[(gpu, "fp16")].derived


def test_errors_are_held_out_one_gpu_at_a_time():
    cmp, fits = fit.comparison()
    pub = fit.published()
    assert len(cmp) == 9 and set(fits) == set(pub.gpu_id)
    for gid, eff in fits.items():
        assert eff == fit.fit(pub[pub.gpu_id != gid])  # the fit behind a GPU's cells never saw that GPU
        assert eff != fit.full_fit()
        cells = cmp[cmp.gpu_id == gid].set_index("precision")
        for prec, cell in cells.iterrows():
            pipe_ms = d.pipeline_ms(d.SDXL, catalog.gpu(gid), prec, eff)["total_ms"]
            assert cell.estimated_ms == pytest.approx(pipe_ms)
            assert cell.error_pct == pytest.approx(100 * (pipe_ms / cell.published_ms - 1))
            assert cell.estimated_speedup == pytest.approx(cells.loc["fp16", "estimated_ms"] / pipe_ms)
    s = fit.summary(cmp)
    assert s["cells"] == 9 and 0 < s["median_abs_error_pct"] <= s["max_abs_error_pct"]
    # Held out is harder than in sample: the full fit scores its own points better.
    in_sample = fit._predict(pub, fit.full_fit()) / pub.latency_ms.to_numpy() - 1
    assert sorted(abs(in_sample))[4] * 100 < s["median_abs_error_pct"]
    assert all(math.isfinite(v) for v in cmp.error_pct)


def test_cli_sdxl_prints_estimates_beside_published_held_out(capsys):
    import json

    from engine.perf.cli import main

    assert main(["estimate", "--sdxl", "--gpu", "rtx-4090", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cmp, _ = fit.comparison()
    rows = {r["precision"]: r for r in out["rows"]}
    assert set(rows) == {"fp16", "int8", "fp8"} and all(r["provenance"] == "estimated" for r in rows.values())
    for prec, r in rows.items():
        cell = cmp[(cmp.gpu_id == "rtx-4090") & (cmp.precision == prec)].iloc[0]
        assert r["heldout_error_pct"] == round(cell.error_pct, 1) and r["published_ms"] == round(cell.published_ms, 1)
    assert main(["estimate", "--sdxl", "--gpu", "a100-sxm-80gb"]) == 0
    text = capsys.readouterr().out
    assert "int8" in text and "fp8" not in text and "held-out error" in text
    assert main(["estimate", "--sdxl", "--model", "meta-llama/Llama-3.1-8B"]) == 2
    assert "takes only --gpu" in capsys.readouterr().err
