"""How many tokens the chosen text holds, so the Experiment page refuses sizes beyond it before queueing
(the job would otherwise fail only once it starts)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from engine.errors import TlabError


@st.cache_resource(show_spinner=False)
def _bundled_tokenizer():
    """The bundled model's tokenizer. Converting it from the GGUF takes 7-17 s on a 2-core CPU, so the
    converted copy is kept in the cache folder (engine/models/gguf_cache.py: 3.4 MB, 0.5 s to load)."""
    from engine.models.bundled import bundled_gguf
    from engine.models.gguf_cache import load_tokenizer

    folder, gguf = bundled_gguf()
    return load_tokenizer(folder / gguf)


@st.cache_data(show_spinner=False, max_entries=16)
def _bundled_model_counts(source: str, stamp: tuple) -> tuple[int, int]:
    """`stamp` (a file's size and mtime) makes an edited file count again."""
    from engine.data import available_tokens, load_documents

    load_documents(source)  # a missing or malformed file is reported without loading the tokenizer first
    return available_tokens(_bundled_tokenizer(), source)


def source_stamp(source: str) -> tuple | None:
    """What identifies this version of `source` for the cache, or None when it cannot be counted here
    (a Hugging Face dataset: loading it may download; the job checks it when it starts)."""
    if source == "bundled":
        return ("bundled",)
    if source.startswith("hf:"):
        return None
    path = Path(source).expanduser()
    try:
        info = path.stat()
    except OSError:
        return ("missing",)  # engine.data.load_documents says what is wrong with the path
    return (info.st_size, info.st_mtime_ns)


def bundled_model_counts(source: str) -> tuple[int, int] | None:
    """(calibration, evaluation) tokens of `source` for the bundled model's tokenizer, or None when the
    source cannot be counted here. Raises TlabError when the source cannot be read."""
    stamp = source_stamp(source)
    if stamp is None:
        return None
    return _bundled_model_counts(source, stamp)


def size_problems(calib_available: int, eval_available: int, calib_seq_len: int | None,
                  eval_tokens: int | None) -> list[str]:
    """What the form asks for beyond what the text holds, naming the fields. Pure.
    Calibration sequences start at random offsets of the calibration part, so their number is not bounded
    by it (they overlap); each one must fit in it, as engine.data.prepare requires."""
    problems = []
    if eval_tokens is not None and eval_tokens > eval_available:
        problems.append(f"Evaluation tokens: the text holds {eval_available:,} held-out tokens, fewer than the "
                        f"{eval_tokens:,} asked for. Enter at most {eval_available:,}, or give more text.")
    if calib_seq_len is not None and calib_seq_len > calib_available:
        problems.append(f"Tokens per calibration sequence: the text's calibration part holds {calib_available:,} "
                        f"tokens, fewer than one sequence of {calib_seq_len:,}. Enter at most "
                        f"{calib_available:,}, or give more text.")
    return problems


def text_sizes(bundled_model: bool, source: str, calib_size: int | None, calib_seq_len: int | None,
               eval_tokens: int | None) -> tuple[list[str], str]:
    """(problems, note) for the Experiment page: the sizes asked for against the tokens `source` holds.
    Counted with the bundled model's tokenizer; other models' tokenizers may need a download, so their
    sweeps are checked when the job starts."""
    if not bundled_model:
        return [], "The sizes are checked against the text when the job starts (with the model's own tokenizer)."
    try:
        counts = bundled_model_counts(source)
    except TlabError as e:  # a missing or unreadable file: say so now rather than when the job starts
        return [str(e)], ""
    if counts is None:
        return [], "The sizes are checked against the dataset when the job starts (it is not downloaded here)."
    calib, held_out = counts
    note = (f"The text holds {calib:,} calibration tokens and {held_out:,} held-out evaluation tokens for the "
            "bundled model.")
    if calib_size and calib_seq_len and calib_size * calib_seq_len > calib:
        note += " The calibration sequences start at random places in it, so they overlap."
    return size_problems(calib, held_out, calib_seq_len, eval_tokens), note


@st.cache_data(show_spinner="Checking the task names with lm-eval...", max_entries=64)
def _task_problem(names: tuple[str, ...]) -> str | None:
    from engine.spec import TaskAccuracySpec
    from engine.task_accuracy import check_tasks

    try:
        check_tasks(TaskAccuracySpec(names=names))  # lm-eval installed (the `eval` extra), names known
    except TlabError as e:
        return str(e)
    return None


def task_problem(tasks) -> str | None:
    """Why a spec.TaskAccuracySpec cannot run here (lm-eval missing, an unknown task name with close names),
    or None. Cached per name list: lm-eval indexes its tasks once (about 15 s) for names other than the
    offline task."""
    return _task_problem(tuple(tasks.names))
