"""Synthetic fixed-length requests in trtllm-bench's JSONL dataset format.

One JSON object per line: {"task_id": int, "input_ids": [int, ...], "output_tokens": int}
(TensorRT-LLM `bench/dataclasses/general.py::InferenceRequest`). Lengths are fixed, as in the
reference tables (`prepare_dataset.py token-norm-dist --input-stdev 0 --output-stdev 0`); token ids
are drawn at random from the vocabulary, skipping special tokens, with a fixed seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

from engine.errors import DataError


def synthetic_requests(num_requests: int, input_len: int, output_len: int, vocab_size: int,
                       seed: int = 0, avoid_ids: Iterable[int] = ()) -> list[dict]:
    if num_requests <= 0 or input_len <= 0 or output_len <= 0:
        raise DataError("Number of requests, input length and output length must all be positive.")
    avoid = {int(i) for i in avoid_ids if i is not None and 0 <= int(i) < vocab_size}
    if vocab_size - len(avoid) < 1:
        raise DataError(f"The vocabulary ({vocab_size} tokens) has no ordinary tokens to build prompts from.")
    rng = random.Random(seed)
    requests = []
    for task_id in range(num_requests):
        ids = []
        while len(ids) < input_len:
            t = rng.randrange(vocab_size)
            if t not in avoid:
                ids.append(t)
        requests.append({"task_id": task_id, "input_ids": ids, "output_tokens": output_len})
    return requests


def special_token_ids(config: dict) -> set[int]:
    """bos/eos/pad ids from an HF config.json dict (eos may be a list)."""
    out: set[int] = set()
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        v = config.get(key)
        if isinstance(v, list):
            out.update(int(x) for x in v)
        elif v is not None:
            out.add(int(v))
    return out


def vocab_and_specials(model_dir: str | Path) -> tuple[int, set[int]]:
    """Vocabulary size and special ids of an exported HF checkpoint (its config.json)."""
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        raise DataError(f"{cfg_path} is missing; cannot size the benchmark prompts. Export the model again.")
    cfg = json.loads(cfg_path.read_text())
    text_cfg = cfg.get("text_config") or {}
    vocab = cfg.get("vocab_size") or text_cfg.get("vocab_size")
    if not vocab:
        raise DataError(f"{cfg_path} has no vocab_size; cannot build benchmark prompts.")
    return int(vocab), special_token_ids(cfg) | special_token_ids(text_cfg)


def write_dataset(path: str | Path, requests: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in requests:
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    return path
