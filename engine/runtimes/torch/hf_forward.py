"""transformers' own forward with its DynamicCache: the reference decode loop (and the timed loop
for models the lean loop of engine.runtimes.torch.decode does not run)."""

from __future__ import annotations


def cache_kwarg(model) -> str:
    """transformers 5.x renames `past_key_values` to `cache`; older versions only know the former."""
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def forward(model, ids, cache, cache_kw: str):
    return model(input_ids=ids, use_cache=True, logits_to_keep=1, **{cache_kw: cache})


def transformers_loop(model):
    """(prefill, step): transformers' forward with its DynamicCache."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    cache_kw = cache_kwarg(model)

    def logits(ids):
        return forward(model, ids, cache, cache_kw).logits[:, -1, :]

    return logits, lambda token: logits(token).argmax(dim=-1, keepdim=True)
