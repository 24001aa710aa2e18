"""Write a random-weight Llama checkpoint of a catalog model's public shape (default SmolLM2-1.7B)
as safetensors plus a tokenizer, so the GPU machine (which cannot receive the 94 MB bundled GGUF)
has a model our loader opens like any local folder. Speed depends only on the shapes; accuracy
figures of such a model mean nothing and are not reported.

    python benchmarks/gpu_check/random_checkpoint.py OUT_DIR --tokenizer DIR [--model HF_ID] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def llama_config(hf_id: str):
    import pandas as pd
    from transformers import LlamaConfig

    arch = pd.read_csv(Path(__file__).resolve().parents[2] / "assets" / "architectures.csv")
    row = arch[arch.hf_id == hf_id]
    if row.empty or not str(row.iloc[0].model_type).startswith("llama"):
        raise SystemExit(f"{hf_id}: not a llama-type model in assets/architectures.csv")
    r = row.iloc[0]
    return LlamaConfig(vocab_size=int(r.vocab_size), hidden_size=int(r.hidden_size),
                       intermediate_size=int(r.intermediate_size), num_hidden_layers=int(r.num_hidden_layers),
                       num_attention_heads=int(r.num_attention_heads), num_key_value_heads=int(r.num_key_value_heads),
                       max_position_embeddings=int(r.max_position_embeddings),
                       tie_word_embeddings=str(r.tie_word_embeddings).lower() == "true",
                       architectures=["LlamaForCausalLM"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--model", default="HuggingFaceTB/SmolLM2-1.7B")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = llama_config(args.model)
    with torch.device(args.device):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(args.out, safe_serialization=True)
    AutoTokenizer.from_pretrained(args.tokenizer).save_pretrained(args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: random {args.model} shape, {n / 1e9:.2f}B parameters, bf16")
    return 0


if __name__ == "__main__":
    sys.exit(main())
