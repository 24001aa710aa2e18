"""Tiny diffusers pipelines built offline with random weights, saved as safetensors folders: what the
local-pipeline tests load. Seconds to build; nothing is downloaded.

- `class_conditional(folder)`: a UNet2DModel with class embeddings + DDIMScheduler (a bare UNet folder:
  unet/ and scheduler/, no model_index.json), 16x16 one-channel images, 3 classes.
- `text_to_image(folder)`: a StableDiffusionPipeline (tiny UNet2DConditionModel, AutoencoderKL,
  CLIPTextModel from a tiny CLIPTextConfig, a CLIPTokenizer from a character vocabulary written here),
  32x32 RGB images from 8x8 latents.
- `sdxl(folder)`: a StableDiffusionXLPipeline of the same size: two CLIP text encoders (the second with a
  projection, whose pooled output and the image's size/crop "time ids" are SDXL's added conditions).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

SEED = 0


def class_conditional(folder: Path, num_classes: int = 3) -> Path:
    import torch
    from diffusers import DDIMScheduler, UNet2DModel

    torch.manual_seed(SEED)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=num_classes, norm_num_groups=8)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    DDIMScheduler(num_train_timesteps=1000).save_pretrained(folder / "scheduler")
    return folder


def _tokenizer_files(folder: Path) -> None:
    """A CLIP BPE vocabulary of single characters (each also as a word end): enough to tokenize prompts."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + ".,!?'-"
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(chars) + [c + "</w>" for c in chars]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16),
                         down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                         layers_per_block=1, norm_num_groups=8, sample_size=32)


def _tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    _tokenizer_files(folder)
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def _save(pipe, folder: Path) -> Path:
    """The pipeline saved as safetensors, without the tokenizer's source files."""
    pipe.save_pretrained(folder, safe_serialization=True)
    src = folder / "_tokenizer_src"
    for f in src.iterdir():
        f.unlink()
    src.rmdir()
    return folder


def text_to_image(folder: Path) -> Path:
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=8)
    vae, tokenizer = _vae(), _tokenizer(folder / "_tokenizer_src")
    vocab = len(tokenizer)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32,
                                                num_hidden_layers=2, num_attention_heads=2,
                                                max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                                pad_token_id=1))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(num_train_timesteps=1000), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    return _save(pipe, folder)


def sdxl(folder: Path) -> Path:
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(SEED)
    width, time_dim = 16, 8  # each text encoder's hidden size; SDXL's addition_time_embed_dim
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=2 * width,
                                attention_head_dim=4, norm_num_groups=8, use_linear_projection=True,
                                addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                                projection_class_embeddings_input_dim=6 * time_dim + width)
    vae, tokenizer = _vae(), _tokenizer(folder / "_tokenizer_src")
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=32, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                            pad_token_id=1, projection_dim=width)
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=CLIPTextModel(config),
                                     text_encoder_2=CLIPTextModelWithProjection(config), tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet,
                                     scheduler=EulerDiscreteScheduler(num_train_timesteps=1000))
    return _save(pipe, folder)
