"""Training and held-out text as token ids, and the batches a step trains on.

Batches are a pure function of (seed, step, micro-batch), so a resumed run trains on exactly the
batches the interrupted one would have.
"""

import random
from dataclasses import dataclass
from typing import Any

from engine.data import training_documents
from engine.errors import DataError

SEP = "\n\n"


@dataclass
class TrainingText:
    train_ids: Any  # LongTensor [n_tokens]: the training part, documents joined
    eval_windows: Any  # LongTensor [n_windows, window]: held-out text, never trained on
    source: str

    @property
    def eval_tokens(self) -> int:
        return int(self.eval_windows.numel())


def prepare_text(tokenizer, source: str, seq_len: int, eval_tokens: int) -> TrainingText:
    train_docs, eval_docs = training_documents(source)
    train_ids = tokenizer(SEP.join(train_docs), return_tensors="pt").input_ids[0]
    eval_ids = tokenizer(SEP.join(eval_docs), return_tensors="pt").input_ids[0]
    if len(train_ids) <= seq_len:
        raise DataError(f"The training text has {len(train_ids)} tokens, not more than one sequence of "
                        f"{seq_len}. Give more text or lower --seq-len.")
    window = min(seq_len, eval_tokens)
    n_windows = min(eval_tokens, len(eval_ids)) // window
    if n_windows < 1:
        raise DataError(f"The held-out text has {len(eval_ids)} tokens, fewer than one evaluation window of "
                        f"{window}. Give more text or lower --seq-len / --eval-tokens.")
    return TrainingText(train_ids, eval_ids[: n_windows * window].view(n_windows, window), source)


def batch(text: TrainingText, step: int, micro: int, batch_size: int, seq_len: int, seed: int):
    """The [batch_size, seq_len] token ids of micro-batch `micro` of step `step` (random windows)."""
    import torch

    rng = random.Random(f"{seed}:{step}:{micro}")
    last = len(text.train_ids) - seq_len
    return torch.stack([text.train_ids[s: s + seq_len] for s in (rng.randint(0, last) for _ in range(batch_size))])


def calibration(text: TrainingText, size: int, seq_len: int, seed: int) -> list:
    """`size` [1, seq_len] calibration sequences from the training part (PTQ / SparseGPT input)."""
    rng = random.Random(f"{seed}:calibration")
    last = len(text.train_ids) - seq_len
    return [text.train_ids[s: s + seq_len].unsqueeze(0) for s in (rng.randint(0, last) for _ in range(size))]
