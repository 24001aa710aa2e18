"""A lean greedy decode loop for Llama-family models, used to time deployed models.

transformers' eager forward spends about 14 ms per step of the bundled 135M model on Python and
small ops (cache objects, masks, rotary per call), more than the INT8 matmuls themselves (about
10 ms), so it hides what a low-precision format changes. Deployment runtimes (TensorRT-LLM,
llama.cpp) keep that overhead small. This loop runs the model's own modules (embedding, norm
weights, projections, rotary tables, lm_head) with a preallocated KV cache and one SDPA call per
layer; only the orchestration is ours. `check_against_transformers` compares it with transformers'
forward on each deployed model before it is timed; a model it does not cover, or that differs,
is timed with transformers' forward, and the measurement's provenance says which loop ran.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.runtimes.torch.hf_forward import cache_kwarg, forward

LEAN = "lean"  # the value of a deployed model's `decode_loop` when this module's loop runs it

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
# Largest logit difference, relative to the largest logit, that still counts as equal: float32
# differs only in summation order; bf16/fp16 round every intermediate.
CHECK_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 3e-2, torch.float16: 1e-2}


def unsupported_reason(model) -> str | None:
    """None when this loop computes what transformers computes for `model`, else why not."""
    cfg = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    if cfg is None or inner is None:
        return "not a transformers causal LM"
    if getattr(cfg, "model_type", None) not in SUPPORTED_TYPES:
        return f"model type {getattr(cfg, 'model_type', None)!r} (the lean loop covers {', '.join(SUPPORTED_TYPES)})"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"activation {cfg.hidden_act!r} (the lean loop computes SiLU-gated MLPs)"
    if not all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "the model's modules are not laid out like a Llama"
    attn = inner.layers[0].self_attn
    if any(hasattr(attn, n) for n in ("q_norm", "k_norm")):
        return "per-head q/k norms"
    return None


def _head_dim(cfg) -> int:
    return getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads


class LeanDecoder:
    """Prefill then one token per step for a batch of equal-length prompts, greedy."""

    def __init__(self, model, batch: int, max_len: int):
        cfg = model.config
        self.model, self.inner = model, model.model
        self.layers = list(self.inner.layers)
        self.heads, self.kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
        self.head_dim, self.eps = _head_dim(cfg), cfg.rms_norm_eps
        self.sizes = [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim]
        window = getattr(cfg, "sliding_window", None)
        if window and getattr(cfg, "use_sliding_window", True) and max_len > window:
            raise ValueError(f"{max_len} tokens exceed the sliding window ({window}); the lean loop has none")
        weight = self.inner.embed_tokens.weight
        positions = torch.arange(max_len, device=weight.device)[None]
        cos, sin = self.inner.rotary_emb(torch.zeros(1, device=weight.device, dtype=weight.dtype), positions)
        half = self.head_dim // 2
        sign = torch.cat([-torch.ones(half), torch.ones(half)]).to(sin)
        # rotate_half(t) * sin == (t's halves swapped) * (sin with its first half negated): one op fewer
        self.cos, self.sin = cos[0][None, :, None], (sin[0] * sign)[None, :, None]  # [1, L, 1, head_dim]
        shape = (len(self.layers), batch, self.kv_heads, max_len, self.head_dim)
        self.k_cache = torch.empty(shape, device=weight.device, dtype=weight.dtype)
        self.v_cache = torch.empty(shape, device=weight.device, dtype=weight.dtype)
        self.pos = 0

    def _qkv(self, attn, x, cos, sin):
        """q [b, heads, t, d], and k and v [b, t, kv_heads, d], with rotary applied to q and k."""
        b, t = x.shape[:2]
        fused = getattr(attn, "qkv_proj", None)
        if fused is not None:  # rotate q and k together
            y = fused.inner(x).view(b, t, self.heads + 2 * self.kv_heads, self.head_dim)
            qk = self._rope(y[:, :, :self.heads + self.kv_heads], cos, sin)
            q, k, v = qk[:, :, :self.heads], qk[:, :, self.heads:], y[:, :, self.heads + self.kv_heads:]
        else:
            q = self._rope(attn.q_proj(x).view(b, t, self.heads, self.head_dim), cos, sin)
            k = self._rope(attn.k_proj(x).view(b, t, self.kv_heads, self.head_dim), cos, sin)
            v = attn.v_proj(x).view(b, t, self.kv_heads, self.head_dim)
        return q.transpose(1, 2), k, v

    def _mlp(self, mlp, x):
        fused = getattr(mlp, "gate_up_proj", None)
        gate, up = fused.inner(x).split(fused.sizes, dim=-1) if fused is not None else (mlp.gate_proj(x), mlp.up_proj(x))
        return mlp.down_proj(F.silu(gate) * up)

    def _norm(self, norm, h):
        return F.rms_norm(h, (h.shape[-1],), norm.weight, getattr(norm, "variance_epsilon", self.eps))

    def scaling(self, attn) -> float:
        return getattr(attn, "scaling", None) or self.head_dim ** -0.5

    def _rope(self, t, cos, signed_sin):
        swapped = t.unflatten(-1, (2, self.head_dim // 2)).flip(-2).flatten(-2)
        return t * cos + swapped * signed_sin

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits of the last position after feeding `ids` [batch, T] at the current position."""
        b, t = ids.shape
        start, end = self.pos, self.pos + t
        cos, sin = self.cos[:, start:end], self.sin[:, start:end]
        h = self.inner.embed_tokens(ids)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            x = self._norm(layer.input_layernorm, h)
            q, k, v = self._qkv(attn, x, cos, sin)
            self.k_cache[i, :, :, start:end] = k.transpose(1, 2)
            self.v_cache[i, :, :, start:end] = v.transpose(1, 2)
            o = F.scaled_dot_product_attention(q, self.k_cache[i, :, :, :end], self.v_cache[i, :, :, :end],
                                               is_causal=start == 0 and t > 1, scale=self.scaling(attn),
                                               enable_gqa=self.heads != self.kv_heads)
            h = h + attn.o_proj(o.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))
            x = self._norm(layer.post_attention_layernorm, h)
            h = h + self._mlp(layer.mlp, x)
        self.pos = end
        h = self._norm(self.inner.norm, h[:, -1:])
        return self.model.lm_head(h)[:, -1]

    def next_token(self, ids: torch.Tensor) -> torch.Tensor:
        return self.logits(ids).argmax(dim=-1, keepdim=True)


@torch.inference_mode()
def check_against_transformers(model, prompt_len: int = 12, steps: int = 3, seed: int = 0) -> str | None:
    """None when the lean loop gives transformers' logits (prefill and `steps` decode steps) on a
    seeded random prompt, else what differed."""
    from transformers import DynamicCache


    why = unsupported_reason(model)
    if why:
        return why
    device = model.model.embed_tokens.weight.device
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (2, prompt_len), generator=gen).to(device)
    lean = LeanDecoder(model, 2, prompt_len + steps)
    cache, cache_kw = DynamicCache(config=model.config), cache_kwarg(model)
    tok = ids
    for step in range(steps + 1):
        want = forward(model, tok, cache, cache_kw).logits[:, -1].float()
        got = lean.logits(tok).float()
        scale = want.abs().max().clamp_min(1e-6)
        diff, tol = float((got - want).abs().max() / scale), CHECK_TOLERANCE.get(lean.k_cache.dtype, 3e-2)
        top2 = want.topk(2, dim=-1).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * tol * scale  # a near-tie may flip within rounding
        flipped = bool(((got.argmax(-1) != want.argmax(-1)) & clear).any())
        if diff > tol or flipped:
            return f"its logits differ from transformers' at step {step} (relative difference {diff:.1e})"
        tok = want.argmax(-1, keepdim=True)
    return None
