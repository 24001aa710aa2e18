"""Work of a latent-diffusion pipeline, counted from its configs, and a roofline latency per catalog GPU.

`unet_ops(config, ...)` walks a diffusers `UNet2DConditionModel` config the way diffusers builds the
model (down blocks, mid block, up blocks with skip concatenation, Transformer2D blocks with self- and
cross-attention and GEGLU feed-forwards) and lists every convolution, linear layer, attention product
and normalization pass with its FLOPs, weights and activations. `vae_decoder_ops` does the same for an
`AutoencoderKL` decoder. Nothing is SDXL-specific except the shipped configs below; tests check the
counts against torch's FlopCounterMode on diffusers models built from small configs.

The latency of an op is a roofline: max(FLOPs / (peak x eta_c), bytes / (bandwidth x eta_m)).
Which ops run in 8 bits follows Model Optimizer's diffusers recipe: convolutions and linear layers are
quantized (weights and inputs), except the embedding/input/output layers its filter skips; the
attention products stay FP16 (no FP8 MHA in the published table). The efficiencies are fitted in
engine/perf/diffusion_fit.py.
"""

import re
from dataclasses import dataclass

import numpy as np

from engine.errors import TlabError
from engine.perf.catalog import GPU

# stabilityai/stable-diffusion-xl-base-1.0 unet/config.json (../shared/reference/sdxl_unet.md).
SDXL_UNET = dict(
    block_out_channels=[320, 640, 1280], layers_per_block=2, transformer_layers_per_block=[1, 2, 10],
    cross_attention_dim=2048, sample_size=128, in_channels=4, out_channels=4, attention_head_dim=[5, 10, 20],
    num_attention_heads=None,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    use_linear_projection=True, norm_num_groups=32)
# The SDXL VAE (stabilityai/sdxl-vae, AutoencoderKL): 8x spatial compression, 4 latent channels.
SDXL_VAE = dict(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, out_channels=3,
                up_block_types=["UpDecoderBlock2D"] * 4)
TEXT_TOKENS = 77  # CLIP context length: the cross-attention keys per image

# Model Optimizer's diffusers example (2024, the table's era) leaves these layers in 16 bits (its
# filter_func), quantizes every other Conv2d, and the linear layers its quant level picks: 2 the
# feed-forwards ("ff.net"), 2.5 also to_q/to_k/to_v, 3 all. Op names below follow diffusers' module names.
UNQUANTIZED = re.compile(r"time_emb_proj|time_embedding|conv_in|conv_out|conv_shortcut|add_embedding")
QUANT_LEVEL = 3.0  # the level of the example's SDXL INT8/FP8 commands (assumed for the published table)
# TensorRT's FP16 kernels may accumulate in FP16. GeForce Ada runs FP16-accumulate MMA at twice the
# FP32-accumulate rate the catalog lists (Ada whitepaper appendix: RTX 4090 330.3 vs 165.2 dense TFLOPS);
# professional and datacenter parts run both at one rate. Assumption, stated on the Reference page.
FP16_ACCUMULATE_TFLOPS = {"rtx-4090": 330.3}
LOW_PRECISIONS = ("int8", "fp8")


@dataclass(frozen=True)
class Op:
    name: str
    kind: str  # conv | linear | attn | act
    flops: float
    weights: float  # parameters (elements)
    act_in: float  # activation elements read
    act_out: float  # activation elements written

    @property
    def quantizable(self) -> bool:
        if self.kind not in ("conv", "linear") or UNQUANTIZED.search(self.name):
            return False
        return (self.kind == "conv" or QUANT_LEVEL >= 3 or "ff.net" in self.name
                or (QUANT_LEVEL >= 2.5 and re.search(r"\.to_[qkv]$", self.name) is not None))


def _per_block(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


class _Counter:
    """Collects ops; helpers mirror diffusers' layers (2 FLOPs per multiply-add, biases ignored)."""

    def __init__(self, batch: int):
        self.b, self.ops = batch, []

    def conv(self, name, cin, cout, hw_out, k=3, hw_in=None):
        self.ops.append(Op(name, "conv", 2 * self.b * hw_out * cin * cout * k * k, cin * cout * k * k,
                           self.b * (hw_in or hw_out) * cin, self.b * hw_out * cout))

    def linear(self, name, fin, fout, rows):
        self.ops.append(Op(name, "linear", 2 * self.b * rows * fin * fout, fin * fout,
                           self.b * rows * fin, self.b * rows * fout))

    def attn(self, name, n_q, n_kv, dim):
        # QK^T and softmax(QK^T)V over all heads; a fused kernel reads Q, K, V and writes O once.
        self.ops.append(Op(name, "attn", 4 * self.b * n_q * n_kv * dim, 0.0,
                           self.b * (n_q + 2 * n_kv) * dim, self.b * n_q * dim))

    def upsample(self, name, ch, hw) -> int:
        """A 2x nearest upsample and its conv; returns the new pixel count."""
        self.act(f"{name}.interpolate", hw * ch, 4 * hw * ch)
        self.conv(f"{name}.conv", ch, ch, 4 * hw)
        return 4 * hw

    def act(self, name, elems_in, elems_out=None):
        """An elementwise/normalization pass (GroupNorm+SiLU, LayerNorm, GEGLU gate, upsample, concat)."""
        self.ops.append(Op(name, "act", 0.0, 0.0, self.b * elems_in, self.b * (elems_out or elems_in)))

    def resnet(self, name, cin, cout, hw, temb):
        self.act(f"{name}.norm1", hw * cin)
        self.conv(f"{name}.conv1", cin, cout, hw)
        if temb:
            self.linear(f"{name}.time_emb_proj", temb, cout, 1)
        self.act(f"{name}.norm2", hw * cout)
        self.conv(f"{name}.conv2", cout, cout, hw)
        if cin != cout:
            self.conv(f"{name}.conv_shortcut", cin, cout, hw, k=1)

    def transformer(self, name, c, hw, layers, cross_dim, tokens, linear_proj):
        # use_linear_projection: proj_in/proj_out are Linear layers, else 1x1 convolutions (same work)
        proj = self.linear if linear_proj else lambda n, cin, cout, rows: self.conv(n, cin, cout, rows, k=1)
        self.act(f"{name}.norm", hw * c)
        proj(f"{name}.proj_in", c, c, hw)
        for i in range(layers):
            blk = f"{name}.transformer_blocks.{i}"
            self.act(f"{blk}.norm1", hw * c)
            for p in ("to_q", "to_k", "to_v", "to_out.0"):
                self.linear(f"{blk}.attn1.{p}", c, c, hw)
            self.attn(f"{blk}.attn1", hw, hw, c)
            self.act(f"{blk}.norm2", hw * c)
            self.linear(f"{blk}.attn2.to_q", c, c, hw)
            self.linear(f"{blk}.attn2.to_k", cross_dim, c, tokens)
            self.linear(f"{blk}.attn2.to_v", cross_dim, c, tokens)
            self.attn(f"{blk}.attn2", hw, tokens, c)
            self.linear(f"{blk}.attn2.to_out.0", c, c, hw)
            self.act(f"{blk}.norm3", hw * c)
            self.linear(f"{blk}.ff.net.0.proj", c, 8 * c, hw)  # GEGLU: value and gate halves of 4c each
            self.act(f"{blk}.ff.net.0.gate", hw * 8 * c, hw * 4 * c)
            self.linear(f"{blk}.ff.net.2", 4 * c, c, hw)
        proj(f"{name}.proj_out", c, c, hw)


def _check(config: dict, keys: tuple, what: str):
    missing = [k for k in keys if k not in config]
    if missing:
        raise TlabError(f"The {what} config lacks {', '.join(missing)}; give the model's full config.json "
                        "(diffusers writes every field).")


def unet_ops(config: dict, batch: int = 2, height_px: int = 1024, width_px: int = 1024,
             tokens: int = TEXT_TOKENS, vae_scale: int = 8) -> list[Op]:
    """The ops of one UNet2DConditionModel forward pass (one denoising step) at `batch` latents.

    With classifier-free guidance a pipeline runs the conditional and unconditional branch together:
    batch = 2 x images.
    """
    _check(config, ("block_out_channels", "down_block_types", "up_block_types", "cross_attention_dim"), "UNet")
    boc = list(config["block_out_channels"])
    n = len(boc)
    lpb = _per_block(config.get("layers_per_block", 2), n)
    tlpb = _per_block(config.get("transformer_layers_per_block", 1), n)
    cross = config["cross_attention_dim"]
    if isinstance(cross, (list, tuple)):
        raise TlabError("Per-block cross_attention_dim lists are not supported; give one number.")
    lin = bool(config.get("use_linear_projection", False))
    step = vae_scale * 2 ** (n - 1)  # the VAE's compression, then each downsampling halves the latent
    if height_px < step or width_px < step or height_px % step or width_px % step:
        raise TlabError(f"An image of {height_px}x{width_px} px does not fit this UNet ({n - 1} downsamplings of "
                        f"a {vae_scale}x latent); pick a multiple of {step} px.")
    h, w = height_px // vae_scale, width_px // vae_scale
    # Heads (num_attention_heads, or attention_head_dim as diffusers reads it) do not change the work:
    # attention FLOPs and bytes depend on the channels, not on how they split into heads.
    c = _Counter(batch)
    temb = config.get("time_embedding_dim") or 4 * boc[0]
    c.linear("time_embedding.linear_1", boc[0], temb, 1)
    c.linear("time_embedding.linear_2", temb, temb, 1)
    if config.get("addition_embed_type") == "text_time":
        c.linear("add_embedding.linear_1", config["projection_class_embeddings_input_dim"], temb, 1)
        c.linear("add_embedding.linear_2", temb, temb, 1)
    hw = h * w
    c.conv("conv_in", config.get("in_channels", 4), boc[0], hw)
    skips, ch = [boc[0]], boc[0]
    for i, kind in enumerate(config["down_block_types"]):
        for j in range(lpb[i]):
            name = f"down_blocks.{i}.resnets.{j}"
            c.resnet(name, ch, boc[i], hw, temb)
            ch = boc[i]
            if "CrossAttn" in kind:
                c.transformer(f"down_blocks.{i}.attentions.{j}", ch, hw, tlpb[i], cross, tokens, lin)
            skips.append(ch)
        if i < n - 1:
            hw //= 4
            c.conv(f"down_blocks.{i}.downsamplers.0.conv", ch, ch, hw, hw_in=4 * hw)  # stride 2
            skips.append(ch)
    mid = config.get("mid_block_type", "UNetMidBlock2DCrossAttn")
    if mid:
        c.resnet("mid_block.resnets.0", ch, ch, hw, temb)
        if "CrossAttn" in mid:
            c.transformer("mid_block.attentions.0", ch, hw, tlpb[-1], cross, tokens, lin)
        c.resnet("mid_block.resnets.1", ch, ch, hw, temb)
    rboc, rlpb, rtlpb = boc[::-1], lpb[::-1], tlpb[::-1]
    for i, kind in enumerate(config["up_block_types"]):
        out = rboc[i]
        for j in range(rlpb[i] + 1):
            skip = skips.pop()
            name = f"up_blocks.{i}.resnets.{j}"
            c.act(f"{name}.concat", hw * (ch + skip))
            c.resnet(name, ch + skip, out, hw, temb)
            ch = out
            if "CrossAttn" in kind:
                c.transformer(f"up_blocks.{i}.attentions.{j}", ch, hw, rtlpb[i], cross, tokens, lin)
        if i < n - 1:
            hw = c.upsample(f"up_blocks.{i}.upsamplers.0", ch, hw)
    c.act("conv_norm_out", hw * ch)
    c.conv("conv_out", ch, config.get("out_channels", 4), hw)
    return c.ops


def vae_decoder_ops(config: dict, batch: int = 1, height_px: int = 1024, width_px: int = 1024) -> list[Op]:
    """The ops of an AutoencoderKL decode (post_quant_conv + Decoder) of `batch` images."""
    _check(config, ("block_out_channels",), "VAE")
    boc = list(config["block_out_channels"])
    n, lat = len(boc), config.get("latent_channels", 4)
    scale = 2 ** (n - 1)
    if height_px % scale or width_px % scale:
        raise TlabError(f"The image size must divide by {scale} for this VAE; pick a multiple of {scale} px.")
    hw = (height_px // scale) * (width_px // scale)
    c = _Counter(batch)
    c.conv("post_quant_conv", lat, lat, hw, k=1)
    ch = boc[-1]
    c.conv("decoder.conv_in", lat, ch, hw)
    c.resnet("decoder.mid_block.resnets.0", ch, ch, hw, 0)
    c.act("decoder.mid_block.attentions.0.group_norm", hw * ch)
    for p in ("to_q", "to_k", "to_v", "to_out.0"):  # one head over all channels, every latent pixel a token
        c.linear(f"decoder.mid_block.attentions.0.{p}", ch, ch, hw)
    c.attn("decoder.mid_block.attentions.0", hw, hw, ch)
    c.resnet("decoder.mid_block.resnets.1", ch, ch, hw, 0)
    for i, out in enumerate(boc[::-1]):
        for j in range(config.get("layers_per_block", 2) + 1):
            c.resnet(f"decoder.up_blocks.{i}.resnets.{j}", ch, out, hw, 0)
            ch = out
        if i < n - 1:
            hw = c.upsample(f"decoder.up_blocks.{i}.upsamplers.0", ch, hw)
    c.act("decoder.conv_norm_out", hw * ch)
    c.conv("decoder.conv_out", ch, config.get("out_channels", 3), hw)
    return c.ops


def totals(ops: list[Op]) -> dict:
    """FLOPs by kind and parameter count (what the tests compare with diffusers)."""
    out = {k: sum(o.flops for o in ops if o.kind == k) for k in ("conv", "linear", "attn")}
    out["flops"] = sum(out.values())
    out["weights"] = sum(o.weights for o in ops)
    return out


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the catalog peaks reached: 16-bit and 8-bit tensor-core compute, memory bandwidth."""
    c16: float
    c8: float
    mem: float


def fp16_peak(gpu: GPU) -> float:
    """FLOP/s of FP16 MMA as TensorRT's diffusion kernels use it (see FP16_ACCUMULATE_TFLOPS)."""
    return FP16_ACCUMULATE_TFLOPS[gpu.id] * 1e12 if gpu.id in FP16_ACCUMULATE_TFLOPS else gpu.peak("bf16")


def supports(gpu: GPU, precision: str) -> bool:
    return precision == "fp16" or (precision in LOW_PRECISIONS and gpu.peak(precision) is not None)


class OpTable:
    """Ops as numpy columns, so a fit can re-time thousands of them per evaluation."""

    def __init__(self, ops: list[Op]):
        col = lambda f: np.array([f(o) for o in ops], dtype=float)  # noqa: E731
        self.flops, self.weights = col(lambda o: o.flops), col(lambda o: o.weights)
        self.act_in, self.act_out = col(lambda o: o.act_in), col(lambda o: o.act_out)
        self.is_act = np.array([o.kind == "act" for o in ops])
        self.quantizable = np.array([o.quantizable for o in ops])

    def seconds(self, gpu: GPU, precision: str, eff: Efficiency) -> np.ndarray:
        """Roofline seconds per op on `gpu`: quantized layers at the 8-bit peak with 1-byte weights and
        inputs, everything else FP16; normalization passes move their activations only."""
        if not supports(gpu, precision):
            raise TlabError(f"{gpu.name} has no {precision.upper()} tensor cores; pick "
                            + ("fp16 or int8." if gpu.peak("int8") else "fp16."))
        low = self.quantizable & (precision != "fp16")
        peak = np.where(low, (gpu.peak(precision) or 0.0) * eff.c8, fp16_peak(gpu) * eff.c16)
        nbytes = (self.weights + self.act_in) * np.where(low, 1.0, 2.0) + self.act_out * 2
        t_mem = nbytes / (gpu.bandwidth * eff.mem)
        return np.where(self.is_act, t_mem, np.maximum(self.flops / peak, t_mem))


def ops_seconds(ops, gpu: GPU, precision: str, eff: Efficiency) -> float:
    table = ops if isinstance(ops, OpTable) else OpTable(ops)
    return float(table.seconds(gpu, precision, eff).sum())


@dataclass(frozen=True)
class Pipeline:
    """A text-to-image run as the published table measures it: `steps` UNet passes at 2 x `images`
    latents (classifier-free guidance), then one VAE decode in FP16. The two text encoders (about 0.8B
    parameters, once per image) are left out: at batch 1 they read their weights once, a few ms."""
    unet: dict
    vae: dict
    steps: int = 30
    images: int = 1
    height_px: int = 1024
    width_px: int = 1024
    guidance: bool = True

    def unet_ops(self) -> list[Op]:
        return unet_ops(self.unet, (2 if self.guidance else 1) * self.images, self.height_px, self.width_px)

    def vae_ops(self) -> list[Op]:
        return vae_decoder_ops(self.vae, self.images, self.height_px, self.width_px)


SDXL = Pipeline(SDXL_UNET, SDXL_VAE)


def pipeline_ms(pipe: Pipeline, gpu: GPU, precision: str, eff: Efficiency, tables: dict | None = None) -> dict:
    """{'unet_step_ms', 'vae_ms', 'total_ms'} of `pipe` on `gpu`; the VAE stays FP16 in every recipe.
    `tables` ({'unet': OpTable, 'vae': OpTable}) saves recounting the ops when a fit calls this often."""
    tables = tables or {"unet": OpTable(pipe.unet_ops()), "vae": OpTable(pipe.vae_ops())}
    step = ops_seconds(tables["unet"], gpu, precision, eff) * 1e3
    vae = ops_seconds(tables["vae"], gpu, "fp16", eff) * 1e3
    return {"unet_step_ms": step, "vae_ms": vae, "total_ms": pipe.steps * step + vae}
