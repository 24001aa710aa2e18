"""Calibration and evaluation text, split into disjoint parts and tokenized once per sweep.

Sources: `bundled` (Python's own documentation topics from the standard library's `pydoc_data`,
needs no network), a user file (.txt: paragraphs; .jsonl: a "text" field per line), or
`hf:NAME[:CONFIG]:SPLIT` for a Hugging Face dataset when the hub is reachable.
Documents (paragraphs of the bundled corpus) are split by position: every fifth one is held out for evaluation, so the two parts
never share text.
"""

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import DataError
from engine.spec import DataSpec

EVAL_EVERY = 5


@dataclass
class PreparedData:
    calib: list  # list of LongTensor [1, calib_seq_len]
    eval_ids: Any  # LongTensor [n_windows, eval_seq_len]
    source: str
    calib_tokens: int
    eval_tokens: int


MAX_DATA_FILE_BYTES = 256 * 2**20  # calibration and evaluation use a few MB of text


def load_documents(source: str) -> list[str]:
    if source == "bundled":
        from pydoc_data.topics import topics

        # Paragraphs, not topics: ~80 topics of very uneven size would make the held-out part lumpy.
        return [p for k in sorted(topics) for p in topics[k].split("\n\n") if p.strip()]
    if source.startswith("hf:"):
        return _hf_documents(source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"Data file '{path}' does not exist. Give a .txt or .jsonl file, or 'bundled'.")
    if path.stat().st_size > MAX_DATA_FILE_BYTES:  # read whole below: a huge file would exhaust memory first
        raise DataError(f"Data file '{path}' is {path.stat().st_size / 2**20:,.0f} MiB; a sweep reads at most "
                        f"{MAX_DATA_FILE_BYTES // 2**20} MiB of text. Use a smaller file (e.g. its first part).")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".jsonl":
        docs = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                docs.append(str(json.loads(line)["text"]))
            except (json.JSONDecodeError, KeyError, TypeError, RecursionError) as exc:  # Recursion: nested too deep
                raise DataError(f"{path}, line {n}: expected a JSON object with a \"text\" field ({exc}).") from exc
    else:
        docs = [p for p in text.split("\n\n") if p.strip()]
    if not docs:
        raise DataError(f"Data file '{path}' holds no text.")
    return docs


def _hf_documents(source: str) -> list[str]:
    parts = source[3:].split(":")
    if len(parts) not in (2, 3):
        raise DataError("Write a Hugging Face dataset as hf:NAME:SPLIT or hf:NAME:CONFIG:SPLIT.")
    name, config, split = (parts[0], None, parts[1]) if len(parts) == 2 else parts
    try:
        import datasets
    except ImportError as exc:
        raise DataError("Hugging Face datasets need the `datasets` package: "
                        "pip install 'tradeoff-lab[data]' (or pip install datasets)") from exc
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as exc:
        raise DataError(f"Could not load dataset {name} ({exc}). Without internet use 'bundled' "
                        "or a local .txt/.jsonl file.") from exc
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    return [str(t) for t in ds[column] if str(t).strip()]


def split_documents(docs: list[str]) -> tuple[list[str], list[str]]:
    """Disjoint (calibration, evaluation) documents; with a single document, its halves."""
    if len(docs) == 1:
        half = len(docs[0]) // 2
        return [docs[0][:half]], [docs[0][half:]]
    held = set(range(EVAL_EVERY - 1, len(docs), EVAL_EVERY)) or {len(docs) - 1}
    calibration = [d for i, d in enumerate(docs) if i not in held]
    seen = set(calibration)  # a paragraph repeated in both parts (headings, idioms) stays in calibration only
    evaluation = [d for i, d in enumerate(docs) if i in held and d not in seen]
    return calibration, evaluation


def token_ids(tokenizer, source: str) -> tuple[Any, Any]:
    """(calibration, evaluation) token ids of `source` as 1-D LongTensors: the parts `prepare` cuts from."""
    calib_docs, eval_docs = split_documents(load_documents(source))
    sep = "\n\n"
    calib_ids = tokenizer(sep.join(calib_docs), return_tensors="pt").input_ids[0]
    eval_ids = tokenizer(sep.join(eval_docs), return_tensors="pt").input_ids[0]
    return calib_ids, eval_ids


def available_tokens(tokenizer, source: str) -> tuple[int, int]:
    """(calibration, evaluation) tokens `source` holds for this tokenizer: the most a sweep can ask for
    (the app checks its fields against them before queueing)."""
    calib_ids, eval_ids = token_ids(tokenizer, source)
    return len(calib_ids), len(eval_ids)


def training_documents(source: str) -> tuple[list[str], list[str]]:
    """(training, held-out evaluation) documents for fine-tuning: training is the calibration part,
    so it never shares a paragraph with the evaluation text."""
    train, held_out = split_documents(load_documents(source))
    if not held_out:
        raise DataError(f"'{source}' has no paragraph left for the held-out evaluation text "
                        "(every paragraph repeats one in the training part); give more varied text.")
    return train, held_out


def prepare(tokenizer, spec: DataSpec) -> PreparedData:
    """Tokenize once; cut calibration sequences (random offsets, seeded) and evaluation windows."""
    calib_ids, eval_ids = token_ids(tokenizer, spec.source)

    if len(eval_ids) < spec.eval_tokens:
        raise DataError(
            f"The evaluation text has {len(eval_ids)} tokens but {spec.eval_tokens} were asked for. "
            "Lower --eval-tokens (the app's 'Evaluation tokens' field) or give more text.")
    seq = min(spec.eval_seq_len, spec.eval_tokens)
    if seq < 16:
        raise DataError(f"Evaluate on at least 16 tokens (got {spec.eval_tokens}).")
    n_windows = spec.eval_tokens // seq
    windows = eval_ids[: n_windows * seq].view(n_windows, seq)

    if len(calib_ids) < spec.calib_seq_len:
        raise DataError(f"The calibration text has {len(calib_ids)} tokens, fewer than one calibration "
                        f"sequence of {spec.calib_seq_len}. Give more text or lower the sequence length.")
    rng = random.Random(spec.seed)
    starts = [rng.randrange(0, len(calib_ids) - spec.calib_seq_len + 1) for _ in range(spec.calib_size)]
    calib = [calib_ids[s: s + spec.calib_seq_len].unsqueeze(0) for s in starts]
    return PreparedData(calib, windows, spec.source, spec.calib_size * spec.calib_seq_len, n_windows * seq)
