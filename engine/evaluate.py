"""Accuracy of a recipe against the unquantized baseline on the same held-out tokens.

The baseline's next-token log-probabilities are computed once per sweep and kept (float16, on
disk when large) so every recipe is compared with the very same reference distribution.
Metrics: perplexity, relative perplexity increase, KL(baseline || recipe) per token, and top-1
token agreement.
"""

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.paths import tlab_home

IN_MEMORY_LIMIT_BYTES = 512 * 2**20
Progress = Callable[[float, str], None]


@dataclass
class Reference:
    """Baseline log-probs [n_windows, seq-1, vocab] (float16), its perplexity and argmax tokens."""

    logprobs: np.ndarray
    top1: np.ndarray
    perplexity: float


def _window_logprobs(model: Any, window: Any):
    import torch

    with torch.no_grad():
        logits = model(window.unsqueeze(0).to(next(model.parameters()).device)).logits[0, :-1].float()
    return torch.log_softmax(logits, dim=-1).cpu()


def _nll(logprobs, targets) -> float:
    return -logprobs.gather(1, targets.unsqueeze(1)).sum().item()


def scratch_array(shape: tuple[int, ...]) -> np.ndarray:
    """A float16 array backed by a file in $TLAB_HOME/tmp. The file is unlinked as soon as it is mapped:
    the mapping lives on, and the disk space comes back when the process ends, even on a crash."""
    folder = tlab_home() / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(suffix=".npy", dir=folder)
    os.close(fd)
    try:
        return np.lib.format.open_memmap(name, mode="w+", dtype=np.float16, shape=shape)
    finally:
        try:
            os.unlink(name)
        except OSError:  # e.g. Windows, where a mapped file cannot be removed; it stays in $TLAB_HOME/tmp
            pass


def reference(model: Any, eval_ids: Any, progress: Progress | None = None) -> Reference:
    progress = progress or (lambda f, s: None)
    n, seq = eval_ids.shape
    vocab = model.config.vocab_size
    shape = (n, seq - 1, vocab)
    size = int(np.prod(shape)) * 2
    if size <= IN_MEMORY_LIMIT_BYTES:
        store = np.empty(shape, dtype=np.float16)
    else:  # too large for memory: a scratch file under $TLAB_HOME
        store = scratch_array(shape)
    top1 = np.empty((n, seq - 1), dtype=np.int64)
    nll = 0.0
    for i in range(n):
        lp = _window_logprobs(model, eval_ids[i])
        nll += _nll(lp, eval_ids[i, 1:])
        store[i] = lp.numpy().astype(np.float16)
        top1[i] = lp.argmax(-1).numpy()
        progress((i + 1) / n, "evaluating the baseline")
    return Reference(store, top1, math.exp(nll / (n * (seq - 1))))


def compare(model: Any, eval_ids: Any, ref: Reference, progress: Progress | None = None) -> dict[str, float]:
    """Metrics of `model` against the reference on the same windows."""
    import torch

    progress = progress or (lambda f, s: None)
    n, seq = eval_ids.shape
    nll = kl = agree = 0.0
    for i in range(n):
        lp = _window_logprobs(model, eval_ids[i])
        nll += _nll(lp, eval_ids[i, 1:])
        base = torch.from_numpy(np.asarray(ref.logprobs[i], dtype=np.float32))
        kl += (base.exp() * (base - lp)).sum().item()
        agree += (lp.argmax(-1).numpy() == ref.top1[i]).sum()
        progress((i + 1) / n, "evaluating")
    tokens = n * (seq - 1)
    ppl = math.exp(nll / tokens)
    return {
        "perplexity": ppl,
        "baseline_perplexity": ref.perplexity,
        "ppl_increase_pct": 100.0 * (ppl / ref.perplexity - 1.0),
        "kl_div": kl / tokens,
        "top1_agreement": float(agree) / tokens,
        "eval_tokens": float(tokens),
    }


def reference_metrics(ref: Reference, eval_ids: Any) -> dict[str, float]:
    """The baseline row's own metrics (zero loss by definition)."""
    n, seq = eval_ids.shape
    return {"perplexity": ref.perplexity, "baseline_perplexity": ref.perplexity, "ppl_increase_pct": 0.0,
            "kl_div": 0.0, "top1_agreement": 1.0, "eval_tokens": float(n * (seq - 1))}
