"""A tiny random Llama and modelopt calibration of it, shared by the CPU and CUDA runtime tests."""

import copy
import warnings

VOCAB = 512


def tiny_llama(hidden: int, heads: int, kv_heads: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=512, num_hidden_layers=2, num_attention_heads=heads,
                      num_key_value_heads=kv_heads, vocab_size=VOCAB, tie_word_embeddings=True,
                      max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


def calibrate(model, cfg, device: str = "cpu"):
    """A modelopt-quantized copy of `model`, calibrated on two seeded random batches."""
    import modelopt.torch.quantization as mtq
    import torch

    gen = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, VOCAB, (2, 64), generator=gen).to(device) for _ in range(2)]

    def loop(m):
        with torch.no_grad():
            for b in batches:
                m(b)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mtq.quantize(copy.deepcopy(model), copy.deepcopy(cfg), loop)
