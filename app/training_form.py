"""The Training page's helpers: the TrainingSpec its form describes, the job that runs it, where a stopped
run resumes, its loss curves as a chart and its figures. Pure functions except `save_upload` (writes the
uploaded file) and `upload_problems` (counts the file's tokens)."""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pandas as pd

from engine import registry
from engine.errors import TlabError
from engine.paths import tlab_home
from engine.spec import BUNDLED_MODEL, ModelRef
from engine.training import checkpoint
from engine.training.run import run_dir, training_payload
from engine.training.spec import MAX_LR, MAX_STEPS, MODE_DEFAULTS, TrainingSpec, mode_default

TRAINING_FN = "engine.training.run:run_training_job"  # on engine.store.job_functions' allow-list

MODE_LABELS = {"qat": "Quantization-aware training (QAT)", "sparse_ft": "2:4 sparse fine-tuning",
               "finetune": "Fine-tune the baseline only"}
DEFAULT_PRECISION = "int8_sq"  # calibrates on any device, and the CPU has INT8 kernels to time it later
DEFAULT_SPARSITY = "sparsegpt"
STOPPED = ("cancelled", "interrupted", "failed")  # a Resume picks these up at their last checkpoint


def default(name: str, mode: str = "qat") -> Any:
    """The engine's default for field `name` in training `mode` (the form starts from it)."""
    return mode_default(mode, name)


WIDGET_STEMS = {"learning_rate": "lr"}


def field_key(name: str, mode: str) -> str:
    """The widget key of field `name`: a field whose default depends on the mode is its own widget per mode,
    so switching mode shows that mode's default (and keeps what the user typed for the other)."""
    stem = f"train_{WIDGET_STEMS.get(name, name)}"
    return f"{stem}_{mode}" if name in MODE_DEFAULTS.get(mode, {}) else stem


# (key, label, low, high, help): every whole-number field of the form, with TrainingSpec's own bounds
MAIN_FIELDS = [
    ("steps", "Steps", 1, MAX_STEPS, "Optimizer steps, for the fine-tuned baseline and again for the recipe."),
    ("seq_len", "Sequence length (tokens)", 8, 32768, "Tokens per training sequence (and evaluation window)."),
    ("batch_size", "Batch size", 1, 4096, "Sequences per micro-batch."),
    ("grad_accum", "Gradient accumulation", 1, 4096, "Micro-batches summed into each optimizer step."),
]
ADVANCED_FIELDS = [
    ("warmup", "Warm-up steps", 0, MAX_STEPS, "Linear warm-up before the cosine decay; fewer than the steps."),
    ("eval_tokens", "Evaluation tokens", 16, 10_000_000, "Held-out tokens the validation loss is measured on."),
    ("calib_size", "Calibration sequences", 1, 4096, "Sequences PTQ or SparseGPT calibrates on."),
    ("checkpoint_every", "Checkpoint every (steps)", 1, MAX_STEPS, "A stopped run resumes from its last checkpoint."),
    ("seed", "Seed", 0, 2**31 - 1, "Fixes the batches, so a resumed run trains on the same ones."),
]
LR_HELP = (f"Peak learning rate of AdamW, above 0 and at most {MAX_LR:g}. QAT uses a small one "
           "(1e-5 to 1e-4).")


def quantized_precisions(choices) -> list:
    """The language-model precisions QAT can use (quantized ones), as engine.devices.PrecisionChoice, with
    whether this device can calibrate them."""
    names = {p.name for p in registry.precisions_for("causal_lm") if not p.is_baseline}
    return [c for c in choices if c.name in names]


def sparsity_methods() -> list[str]:
    return [s.name for s in registry.SPARSITIES.values() if s.modelopt_mode]


def build_spec(values: dict) -> TrainingSpec:
    """The TrainingSpec of the form's values (mode, precision, sparsity, data and the number fields), on the
    bundled model. Raises TlabError with what to fix."""
    mode = values["mode"]
    fields = {k: v for k, v in values.items() if k not in ("mode", "precision", "sparsity")}
    return TrainingSpec(model=ModelRef(BUNDLED_MODEL), mode=mode,
                        precision=values.get("precision") if mode == "qat" else None,
                        sparsity=values.get("sparsity") if mode == "sparse_ft" else None, **fields)


def job_title(spec: TrainingSpec) -> str:
    return f"Training · bundled model: {spec.label}, {spec.steps} steps"


def training_job(spec: TrainingSpec) -> tuple[str, dict, str]:
    """(function, payload, title) of the job that runs `spec`."""
    return TRAINING_FN, training_payload(spec), job_title(spec)


def job_spec(job: dict) -> TrainingSpec | None:
    """The TrainingSpec a training job runs, or None when its payload is not one (e.g. hand-written)."""
    try:
        return TrainingSpec.from_dict((job.get("payload") or {}).get("spec"))
    except (TlabError, AttributeError):
        return None


def training_jobs(jobs: list[dict]) -> list[dict]:
    return [j for j in jobs if j.get("fn") == TRAINING_FN]


def same_run_active(jobs: list[dict], spec: TrainingSpec) -> dict | None:
    """A queued or running job training this very spec: a second one would write the same checkpoints."""
    for job in training_jobs(jobs):
        if job["status"] in ("queued", "running") and (job.get("payload") or {}).get("spec") == spec.to_dict():
            return job
    return None


def resume_point(spec: TrainingSpec) -> str:
    """Where a queued-again run of `spec` starts, from its checkpoint folders (engine.training.checkpoint).
    Raises TlabError when a checkpoint is unreadable (saying which folder to delete)."""
    if spec.mode != "finetune":
        here = checkpoint.latest(run_dir(spec))
        if here is not None:
            return f"{spec.label} resumes at step {here.step} of {spec.steps} (checkpoint {here.folder.name})."
    base_spec = spec.baseline()
    base = checkpoint.latest(run_dir(base_spec))
    if base is None:
        return "No checkpoint was saved yet: it starts again from step 0."
    if base.step < base_spec.steps:
        return (f"The fine-tuned baseline resumes at step {base.step} of {base_spec.steps} "
                f"(checkpoint {base.folder.name}).")
    if spec.mode == "finetune":
        return f"All {spec.steps} steps are done (checkpoint {base.folder.name}); only the figures are measured."
    return (f"The fine-tuned baseline is done and reused; {spec.label} starts from step 0 "
            f"(it checkpoints every {spec.checkpoint_every} steps).")


def curves_frame(curves: dict[str, list[dict]]) -> pd.DataFrame:
    """engine.training.run.loss_curves as one long frame: stage, step, loss (stages in the engine's order)."""
    rows = [{"stage": stage, "step": r["step"], "loss": r["loss"]} for stage, rows_ in curves.items()
            for r in rows_ if "step" in r and "loss" in r]
    return pd.DataFrame(rows, columns=["stage", "step", "loss"])


def loss_figure(curves: dict[str, list[dict]]):
    """A plotly line chart of the training loss, one line per stage (fine-tuned baseline first)."""
    import plotly.graph_objects as go

    frame = curves_frame(curves)
    fig = go.Figure()
    for stage in curves:
        part = frame[frame["stage"] == stage]
        if len(part):
            fig.add_trace(go.Scatter(x=part["step"], y=part["loss"], mode="lines+markers" if len(part) < 30
                                     else "lines", name=stage))
    longest = int(frame["step"].max()) if len(frame) else 1
    fig.update_layout(xaxis_title="optimizer step", yaxis_title="training loss (nats/token)", height=360,
                      showlegend=True,  # plotly hides a lone line's legend: the stage's name must show
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h", y=1.12))
    fig.update_xaxes(dtick=max(1, math.ceil(longest / 10)) if longest <= 100 else None)  # whole steps only
    return fig


FIGURES = [("validation_loss_original", "Original model"),
           ("validation_loss_finetuned_baseline", "Fine-tuned baseline (BF16)"),
           ("validation_loss_before", "Before training"), ("validation_loss_after", "After training")]


def figures_frame(metrics: dict, spec: TrainingSpec) -> pd.DataFrame:
    """The stored validation losses of a finished run, named for what each model is."""
    names = dict(FIGURES)
    if spec.mode != "finetune":
        names["validation_loss_before"] = spec.parent_label
        names["validation_loss_after"] = spec.label
    else:  # a fine-tune run starts from the original model and ends as the fine-tuned baseline
        names.pop("validation_loss_before")
        names.pop("validation_loss_after")
    rows = [{"Model": label, "Validation loss (nats/token)": metrics[key]}
            for key, label in names.items() if metrics.get(key) is not None]
    return pd.DataFrame(rows)


def gap_text(metrics: dict) -> str | None:
    gap = metrics.get("gap_closed_pct")
    if gap is None:
        return None
    return (f"Training closed {gap:.1f}% of the gap between the post-training recipe and the fine-tuned "
            "baseline (100%: as good as the baseline; below 0: worse than before).")


def save_upload(name: str, data: bytes) -> str:
    """Keep an uploaded training file under $TLAB_HOME/uploads (named by content, so the same file gives the
    same spec and resumes the same run) and return its path."""
    suffix = ".jsonl" if name.lower().endswith(".jsonl") else ".txt"
    path = tlab_home() / "uploads" / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def size_problems(train_tokens: int, eval_tokens_available: int, seq_len: int | None,
                  eval_tokens: int | None) -> list[str]:
    """What the run needs beyond what the text holds (engine.training.text.prepare_text's checks). Pure."""
    problems = []
    if seq_len is not None and train_tokens <= seq_len:
        problems.append(f"Sequence length: the text's training part holds {train_tokens:,} tokens, not more than "
                        f"one sequence of {seq_len:,}. Enter less than {train_tokens:,}, or give more text.")
    if seq_len is not None and eval_tokens is not None and eval_tokens_available < min(seq_len, eval_tokens):
        problems.append(f"The text's held-out part holds {eval_tokens_available:,} tokens, fewer than one "
                        f"evaluation window of {min(seq_len, eval_tokens):,}. Lower the sequence length or the "
                        "evaluation tokens, or give more text.")
    return problems


def upload_problems(source: str, seq_len: int | None, eval_tokens: int | None) -> list[str]:
    """An uploaded file checked as the Experiment page checks its uploads: readable, and holding enough
    tokens for the bundled model (its training and held-out parts are the sweep's calibration and
    evaluation parts)."""
    from app import data_check

    try:
        counts = data_check.bundled_model_counts(source)
    except TlabError as e:
        return [str(e)]
    return size_problems(counts[0], counts[1], seq_len, eval_tokens) if counts else []
