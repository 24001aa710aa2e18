"""Model architecture facts for the roofline: from the shipped catalog, a config.json, or a loaded model.

Only the numbers in a Hugging Face config.json are used; parameter counts are derived from them.
"""

import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from engine.errors import ModelLoadError, UnknownNameError
from engine.paths import asset

# Families whose MLP is up -> act -> down (2 matrices); everything else here is gated (3 matrices).
# "-Instruct", "-chat", "-it" (and "-Instruct-v0.2"...): fine-tuned variants share the base's architecture
TUNED_SUFFIX = re.compile(r"[-_](instruct|chat|it)([-_]v?\d+(\.\d+)*)?$", re.IGNORECASE)
TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3", "mpt"}
UNGATED_TYPES = {"gptj", "falcon", "mpt", "gpt2", "gpt_neox", "opt", "bloom", "gpt_bigcode", "phi"}


@dataclass(frozen=True)
class Architecture:
    name: str
    model_type: str
    hidden: int
    intermediate: int  # per expert for MoE
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    max_context: int | None
    tied_embeddings: bool = False
    num_experts: int = 0  # 0 = dense
    experts_per_token: int = 0
    gated_mlp: bool = True
    source: str = ""

    # Parameters per layer, by role (elements, not bytes).
    @property
    def attn_params(self) -> int:
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        return q + kv + o

    @property
    def expert_params(self) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * self.intermediate

    @property
    def mlp_params(self) -> int:
        """All MLP weights in one layer (every expert for MoE)."""
        if self.is_moe:
            return self.num_experts * self.expert_params + self.hidden * self.num_experts
        return self.expert_params

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def total_params(self) -> int:
        body = self.layers * (self.attn_params + self.mlp_params)
        return body + self.embed_params * (1 if self.tied_embeddings else 2)

    @property
    def active_params(self) -> int:
        """Parameters one token touches (MoE: only its experts)."""
        mlp = (self.experts_per_token * self.expert_params if self.is_moe else self.expert_params)
        return self.layers * (self.attn_params + mlp) + self.embed_params

    def kv_bytes_per_token(self, kv_bytes: float) -> float:
        """K and V of one token over all layers, whole model (before TP split)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * kv_bytes


def _int(v, default=None):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return default
    return int(v)


def from_config(cfg: dict, name: str = "", source: str = "") -> Architecture:
    """Build from a config.json dict (handles llama/mistral/qwen/gemma/phi/gptj/falcon/mpt/mixtral names)."""
    if "text_config" in cfg and "hidden_size" not in cfg:  # multimodal wrappers
        cfg = {**cfg["text_config"], "_name_or_path": cfg.get("_name_or_path")}
    mt = str(cfg.get("model_type", "")).split()[0]
    g = lambda *keys, default=None: next((cfg[k] for k in keys if cfg.get(k) is not None  # noqa: E731
                                         and not (isinstance(cfg[k], float) and math.isnan(cfg[k]))),
                                         default)
    hidden = _int(g("hidden_size", "n_embd", "d_model"))
    layers = _int(g("num_hidden_layers", "n_layer", "n_layers", "num_layers"))
    heads = _int(g("num_attention_heads", "n_head", "n_heads"))
    if not (hidden and layers and heads):
        raise ModelLoadError(f"config for '{name or mt}' lacks hidden size, layer count or head count; "
                             "pass a decoder-only LLM config.json.")
    kv = g("num_key_value_heads", "num_kv_heads", "n_head_kv")
    if kv is None and cfg.get("multi_query"):
        kv = 1
    if kv is None and isinstance(cfg.get("attn_config"), dict) and cfg["attn_config"].get("kv_n_heads"):
        kv = cfg["attn_config"]["kv_n_heads"]
    kv = _int(kv, heads)
    inter = g("intermediate_size", "n_inner", "ffn_hidden_size", "ffn_dim")
    if inter is None and cfg.get("expansion_ratio"):
        inter = hidden * cfg["expansion_ratio"]
    inter = _int(inter, 4 * hidden)
    experts = _int(g("num_local_experts", "num_experts", "n_routed_experts"), 0)
    moe_inter = g("moe_intermediate_size")
    if experts > 1 and moe_inter is not None:
        inter = _int(moe_inter)
    # config classes of these families default to tied embeddings when the key is absent
    tie = g("tie_word_embeddings", default=mt in TIED_BY_DEFAULT)
    tie = str(tie).lower() == "true" if not isinstance(tie, bool) else tie
    return Architecture(
        name=name or str(cfg.get("_name_or_path") or mt), model_type=mt, hidden=hidden,
        intermediate=inter, layers=layers, heads=heads, kv_heads=kv,
        head_dim=_int(g("head_dim"), hidden // heads), vocab=_int(g("vocab_size", "padded_vocab_size")),
        max_context=_int(g("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")),
        tied_embeddings=tie, num_experts=experts if experts > 1 else 0,
        experts_per_token=_int(g("experts_per_token", "num_experts_per_tok", "moe_topk"), 0),
        gated_mlp=mt not in UNGATED_TYPES, source=source)


@lru_cache(maxsize=1)
def catalog() -> dict[str, Architecture]:
    df = pd.read_csv(asset("architectures.csv"))
    out = {}
    for r in df.to_dict("records"):
        cfg = {k: v for k, v in r.items() if k not in ("hf_id", "source", "stated_params")}
        if r.get("moe_intermediate_size") is None or pd.isna(r.get("moe_intermediate_size")):
            cfg.pop("moe_intermediate_size", None)
        out[r["hf_id"]] = from_config(cfg, name=r["hf_id"], source=f"assets/architectures.csv: {r['source']}")
    return out


def _close(name: str, ids: list[str]) -> list[str]:
    by_tail = {i.split("/")[-1].lower(): i for i in ids}
    hits = difflib.get_close_matches(name.split("/")[-1].lower(), list(by_tail), n=3, cutoff=0.5)
    return [by_tail[h] for h in hits]


def resolve(model) -> Architecture:
    """A catalog HF id, a config.json path (file or folder), a config dict, or a loaded model."""
    if isinstance(model, Architecture):
        return model
    if isinstance(model, dict):
        return from_config(model, source="config dict")
    if hasattr(model, "config"):  # a loaded transformers model
        cfg = model.config.to_dict() if hasattr(model.config, "to_dict") else dict(vars(model.config))
        return from_config(cfg, source="loaded model config")
    name = str(model)
    cat = catalog()
    if name in cat:
        return cat[name]
    lower = {k.lower(): k for k in cat}
    if name.lower() in lower:
        return cat[lower[name.lower()]]
    tails = [k for k in cat if k.split("/")[-1].lower() == name.lower()]
    if len(tails) == 1:  # "Llama-3.1-8B" without the organization
        return cat[tails[0]]
    base = TUNED_SUFFIX.sub("", name)
    if base != name and not Path(name).expanduser().exists():
        try:  # an instruction-tuned variant has its base model's architecture
            found = resolve(base)
        except (ModelLoadError, UnknownNameError):
            found = None
        if found is not None:
            return dataclasses.replace(found, name=name, source=f"{found.source} (the architecture of {found.name}; "
                                                                f"{name} is a tuned variant of it)")
    p = Path(name).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if p.is_file():
        try:
            cfg = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"Cannot read model config {p}: {e}") from e
        return from_config(cfg, name=str(p.parent.name if p.name == "config.json" else p.stem),
                           source=f"config.json at {p}")
    close = _close(name, list(cat))
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"Unknown model '{name}'.{hint} Use a Hugging Face id from the catalog "
        f"({len(cat)} models, see `assets/architectures.csv`) or a path to a config.json.")
