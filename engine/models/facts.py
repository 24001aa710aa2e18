"""Model facts (parameters, layers, widths, heads, vocab) read from a config."""

from typing import Any


def _get(cfg: Any, *names, default=None):
    for n in names:
        v = cfg.get(n) if isinstance(cfg, dict) else getattr(cfg, n, None)
        if v is not None:
            return v
    return default


def model_facts(config: Any, model: Any = None) -> dict[str, Any]:
    """Facts from a transformers config (or config.json dict); parameters counted from the
    loaded model when given, else from the shapes in the config."""
    hidden = _get(config, "hidden_size", "n_embd", "d_model")
    layers = _get(config, "num_hidden_layers", "n_layer", "n_layers")
    heads = _get(config, "num_attention_heads", "n_head", "n_heads")
    kv_heads = _get(config, "num_key_value_heads", "num_kv_heads", default=heads)
    vocab = _get(config, "vocab_size")
    inter = _get(config, "intermediate_size", "n_inner", default=4 * hidden if hidden else None)
    if model is not None:
        params = sum(p.numel() for p in model.parameters())
        params_source = "counted from the loaded weights"
    elif None not in (hidden, layers, heads, vocab, inter):
        head_dim = _get(config, "head_dim", default=hidden // heads)
        attn = hidden * head_dim * (heads + 2 * kv_heads) + heads * head_dim * hidden
        mlp = 3 * hidden * inter
        tied = bool(_get(config, "tie_word_embeddings", default=False))
        params = layers * (attn + mlp + 2 * hidden) + vocab * hidden * (1 if tied else 2) + hidden
        params_source = "computed from config shapes (gated MLP assumed)"
    else:
        params, params_source = None, "unknown"
    return {
        "model_type": _get(config, "model_type"),
        "parameters": params,
        "parameters_source": params_source,
        "layers": layers,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "attention_heads": heads,
        "kv_heads": kv_heads,
        "vocab_size": vocab,
        "max_position_embeddings": _get(config, "max_position_embeddings", "n_positions"),
    }
