"""Run a TrainingSpec end to end, the reference's way (modelopt llm_qat: fine-tune in full precision,
quantize, then QAT): the original model's held-out validation loss; the fine-tuned baseline (same
data and settings, trained once and reused); the PTQ-calibrated or 2:4-sparsified fine-tuned model
before training; and after training. Each stage's checkpoints and figures live under
$TLAB_HOME/training/<spec id>/ (loss.jsonl is the live loss curve), so a killed run resumes.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.access import check_web_sweep
from engine.cpu_threads import job_threads
from engine.errors import SpecError, TlabError
from engine.paths import tlab_home
from engine.quantize import check_runnable
from engine.spec import DataSpec, Recipe, TaskAccuracySpec
from engine.store.entities import Result
from engine.system import describe_device, resolve_device, versions
from engine.training import checkpoint, loop, recipes
from engine.training.spec import TrainingSpec
from engine.training.text import TrainingText, batch, calibration, prepare_text

Progress = Callable[..., None]  # progress(fraction, stage, log=None), as jobs get it
EXPERIMENT = "training"


@dataclass
class TrainingReport:
    spec: TrainingSpec
    baseline_loss: float  # the original model
    finetuned_loss: float  # the fine-tuned unquantized baseline
    before_loss: float  # PTQ / sparsified before training (fine-tune mode: the original model)
    after_loss: float | None  # None when the run was stopped
    steps: int
    tokens_seen: int
    resumed_from: int
    stopped: bool
    run_dir: Path
    checks: dict = field(default_factory=dict)  # quantizers in place / 2:4 mask verified
    result_id: str | None = None
    model: Any = field(default=None, repr=False)  # the trained model (sparse: masks baked in), not stored
    # Offline task scores (TaskScore.as_dict per task) by stage: "baseline" (fine-tuned), "before", "after"
    tasks: dict = field(default_factory=dict)

    @property
    def gap_closed_pct(self) -> float | None:
        """Share of the PTQ (or sparsity) gap to the fine-tuned baseline that training closed."""
        gap = self.before_loss - self.finetuned_loss
        if self.after_loss is None or self.spec.mode == "finetune" or gap <= 0:
            return None
        return 100.0 * (self.before_loss - self.after_loss) / gap


def run_dir(spec: TrainingSpec) -> Path:
    return tlab_home() / "training" / spec.id


def run_training(spec: TrainingSpec, store: Any = None, progress: Progress | None = None,
                 on_step: Callable[[loop.StepInfo], bool | None] | None = None,
                 load: Callable | None = None, score: Callable | None = None) -> TrainingReport:
    """Train as `spec` says and return the figures; saves a Result per stage when `store` is given.
    `on_step` may return False to stop (the run resumes from its checkpoint next time).
    `score(model, tokenizer, limit)` -> {task: TaskScore} scores task accuracy when spec.task_limit is
    set (default: lm-eval on the offline task)."""
    progress = progress or (lambda *a, **k: None)
    device = resolve_device(spec.device)
    if spec.mode == "qat":
        check_runnable(Recipe(precision=spec.precision), device)
    if spec.task_limit is not None and score is None:
        score = _offline_task_scorer()  # refuses before any work when lm-eval is missing
    if load is None:
        from engine.models import load_model as load
    with job_threads(device):
        progress(0.0, "loading the model")
        lm = load(spec.model, device)
        text = prepare_text(lm.tokenizer, spec.data, spec.seq_len, spec.eval_tokens)
        tracker = _Tracker(spec, progress, on_step)
        ft_spec = spec.baseline()
        ft_dir = run_dir(ft_spec)
        baseline = _cached(ft_dir, "baseline", lambda: _evaluate(lm.model, text, progress, "the original model"))
        model = lm.model  # trained in place: the original is evaluated once (above) and not needed again
        ft = _stage(ft_spec, model, text, ft_dir, baseline, baseline, baseline, tracker, progress)
        tasks = _Tasks(spec.task_limit, score, lm.tokenizer, progress)
        if not ft.stopped and tasks:  # the fine-tuned model, before PTQ changes it in place
            ft_tasks = tasks.cached(ft_dir, "baseline", model, ft_spec.label)
            ft.tasks = {"baseline": ft_tasks, "after": ft_tasks} if spec.mode == "finetune" else {}
        _save(store, ft, lm.name, device)
        if spec.mode == "finetune" or ft.stopped:
            return ft if spec.mode == "finetune" else _stopped(spec, ft)
        here = run_dir(spec)
        calib = calibration(text, spec.calib_size, spec.seq_len, spec.seed)
        progress(None, f"{'calibrating' if spec.mode == 'qat' else 'pruning'} {spec.parent_label}")
        checks: dict = {}
        if spec.mode == "qat":
            model = recipes.quantize_for_qat(model, spec.precision, calib)
        else:
            model = recipes.sparsify_for_training(model, spec.sparsity, calib)
        # The parent's figures come before a resumed sparse run loads its checkpoint's (trained) weights.
        before = _cached(here, "before", lambda: _evaluate(model, text, progress, spec.parent_label))
        parent_tasks = tasks.cached(here, "before", model, spec.parent_label) if tasks else None
        if spec.mode == "sparse_ft":
            found = checkpoint.latest(here)
            if found is not None:  # the masks to keep are the checkpoint's (it was pruned the same way)
                checkpoint.load_model_state(model, found.folder)
            checks["masks"] = recipes.sparse_masks(model)
        report = _stage(spec, model, text, here, baseline, ft.after_loss, before, tracker, progress, checks)
        if not report.stopped and tasks:
            report.tasks = {"baseline": tasks.cached(ft_dir, "baseline", None, ft_spec.label),
                            "before": parent_tasks, "after": tasks.cached(here, "after", report.model, spec.label)}
        _save(store, report, lm.name, device)
        return report


def _stage(spec: TrainingSpec, model: Any, text: TrainingText, folder: Path, baseline: float, finetuned: float,
           before: float, tracker: "_Tracker", progress: Progress, checks: dict | None = None) -> TrainingReport:
    checks = dict(checks or {})
    schedule = loop.Schedule(spec.steps, spec.learning_rate, spec.warmup, spec.grad_accum, spec.checkpoint_every)
    tracker.begin(spec)
    out = loop.train(model, lambda step, micro: batch(text, step, micro, spec.batch_size, spec.seq_len, spec.seed),
                     schedule, folder, tracker.step, {"spec_id": spec.id})
    if out.stopped:
        return TrainingReport(spec, baseline, finetuned, before, None, out.step, out.tokens_seen, out.resumed_from,
                              True, folder)
    if spec.mode == "qat":
        checks["quantizers"] = recipes.quantizer_summary(model)
    if spec.mode == "sparse_ft":
        checks["mask"] = recipes.finish_sparse(model, checks.pop("masks"))
    after = _cached(folder, "after", lambda: _evaluate(model, text, progress, spec.label))
    finetuned = after if spec.mode == "finetune" else finetuned
    return TrainingReport(spec, baseline, finetuned, before, after, out.step, out.tokens_seen, out.resumed_from,
                          False, folder, checks, model=model)


def _stopped(spec: TrainingSpec, ft: TrainingReport) -> TrainingReport:
    return TrainingReport(spec, ft.baseline_loss, ft.finetuned_loss, math.nan, None, 0, 0, 0, True, run_dir(spec))


class _Tracker:
    """Turns loop steps into job progress (fraction over both stages, time left) and loss lines."""

    def __init__(self, spec: TrainingSpec, progress: Progress, on_step):
        self.progress, self.on_step = progress, on_step
        self.total = spec.steps * (1 if spec.mode == "finetune" else 2)
        self.offset = 0
        self.label = ""
        self.spec: TrainingSpec | None = None

    def begin(self, spec: TrainingSpec) -> None:
        if self.spec is not None:
            self.offset += self.spec.steps
        self.spec, self.label = spec, spec.label

    def step(self, info: loop.StepInfo) -> bool | None:
        done_here = info.step - info.resumed_from
        left_s = info.elapsed_s / max(1, done_here) * (self.total - self.offset - info.step)
        line = (f"{self.label}: step {info.step}/{info.steps}  loss {info.loss:.4f}  lr {info.lr:.2e}  "
                f"tokens {info.tokens_seen:,}")
        self.progress((self.offset + info.step) / self.total, f"{self.label}: step {info.step}/{info.steps}, "
                      f"about {_duration(left_s)} left", log=line)
        return self.on_step(info) if self.on_step else None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _evaluate(model: Any, text: TrainingText, progress: Progress, what: str) -> float:
    progress(None, f"validation loss of {what}")
    return loop.validation_loss(model, text.eval_windows)


def _cached(folder: Path, key: str, compute: Callable[[], Any]) -> float:
    """A figure computed once per run folder (a resumed run does not evaluate again)."""
    return float(_cached_json(folder, key, compute))


def _cached_json(folder: Path, key: str, compute: Callable[[], Any]) -> Any:
    path = folder / "evals.json"
    figures = json.loads(path.read_text()) if path.is_file() else {}
    if key not in figures:
        figures[key] = compute()
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(figures, indent=1))
        tmp.replace(path)
    return figures[key]


class _Tasks:
    """Task accuracy of a stage's model, scored once per run folder and question count (falsy when the
    spec asks for none)."""

    def __init__(self, limit: int | None, score: Callable | None, tokenizer: Any, progress: Progress):
        self.limit, self.score, self.tokenizer, self.progress = limit, score, tokenizer, progress

    def __bool__(self) -> bool:
        return self.limit is not None

    def cached(self, folder: Path, stage: str, model: Any, what: str) -> dict:
        def compute() -> dict:
            if model is None:
                raise TlabError(f"The task scores of {what} are missing from {folder}; run the training again.")
            self.progress(None, f"task accuracy of {what} ({self.limit} questions, lm-eval)")
            return {name: s.as_dict() for name, s in self.score(model, self.tokenizer, self.limit).items()}
        return _cached_json(folder, f"tasks_{stage}:{self.limit}", compute)


def _offline_task_scorer() -> Callable:
    """lm-eval on the offline task, like a sweep's TaskAccuracySpec (checked now: the install hint comes
    before minutes of training, not after)."""
    from engine import task_accuracy

    task_accuracy.check_tasks(TaskAccuracySpec((task_accuracy.OFFLINE_TASK,)))

    def score(model: Any, tokenizer: Any, limit: int) -> dict:
        tasks = TaskAccuracySpec((task_accuracy.OFFLINE_TASK,), limit=limit, batch_size=16)
        return task_accuracy.score_tasks(model, tokenizer, tasks)
    return score


def to_result(report: TrainingReport, model_name: str, device: str) -> Result:
    spec = report.spec
    metrics = {"validation_loss_original": report.baseline_loss,
               "validation_loss_finetuned_baseline": report.finetuned_loss,
               "validation_loss_before": report.before_loss, "validation_loss_after": report.after_loss,
               "tokens_seen": float(report.tokens_seen), "training_steps": float(report.steps)}
    if report.gap_closed_pct is not None:
        metrics["gap_closed_pct"] = report.gap_closed_pct
    metrics.update(perplexity_metrics(report))
    metrics.update(task_metrics(report))
    units = {k: "nats/token" for k in metrics if k.startswith("validation_loss")}
    units.update({k: u for k, u in (("gap_closed_pct", "%"), ("tokens_seen", "tokens"), ("training_steps", "steps"),
                                    ("ppl_increase_pct", "%"), ("ppl_increase_pct_before", "%")) if k in metrics})
    checks = {k: v for k, v in report.checks.items() if k != "masks"}
    training = {"kind": "measured", "label": spec.label, "parent": spec.parent_label, "mode": spec.mode,
                "steps": report.steps, "tokens_seen": report.tokens_seen, "data": spec.data, "seed": spec.seed,
                "learning_rate": spec.learning_rate, "batch_size": spec.batch_size, "grad_accum": spec.grad_accum,
                "seq_len": spec.seq_len, "warmup": spec.warmup,
                "schedule": "AdamW, linear warm-up then cosine decay to 0", "resumed_from": report.resumed_from,
                "checks": checks, "loss_curve": str(report.run_dir / loop.LOSS_LOG)}
    accuracy = {"kind": "measured", "metric": "validation loss (mean next-token cross-entropy, nats)",
                "eval_text": f"held-out part of {spec.data}", "device": device,
                "perplexity": (f"exp of the validation loss on {spec.eval_tokens:,} held-out tokens of {spec.data} "
                               f"in windows of {spec.seq_len} (not a sweep's evaluation text)"),
                "compared_with": ("the fine-tuned BF16 baseline (same data and settings): ppl_increase_pct and "
                                  "task losses are against it, not against the original model"),
                "perplexity_before": f"{spec.parent_label}, before training"}
    provenance = {"accuracy": accuracy, "training": training}
    if "after" in report.tasks:
        from engine.task_accuracy import result_provenance

        provenance["task_accuracy"] = {
            **result_provenance(_scores(report.tasks["after"]), device),
            "compared_with": "the fine-tuned BF16 baseline, scored the same way",
            "stages": {"finetuned_baseline": "BF16 (fine-tuned)", "before": spec.parent_label, "after": spec.label}}
    return Result(id=spec.id, model=model_name, precision=spec.precision or "bf16", sparsity=spec.sparsity or "none",
                  experiment=EXPERIMENT, spec={"training": spec.to_dict()}, metrics=metrics, units=units,
                  provenance=provenance, device=device, versions=versions())


def _ppl(loss: float | None) -> float | None:
    """Perplexity of a mean next-token loss; None where there is no finite one."""
    if loss is None or not math.isfinite(loss) or loss > 700:  # exp overflows past ~709
        return None
    return math.exp(loss)


def perplexity_metrics(report: TrainingReport) -> dict[str, float]:
    """The sweep axes' figures, from the validation losses: perplexity = exp(loss), and its increase over
    the fine-tuned baseline in % (exp of the loss difference). The parent's (PTQ / sparsified, before
    training) go in *_before; a fine-tune result is the baseline itself (0% increase)."""
    out: dict[str, float] = {}
    pairs = {"perplexity": report.after_loss, "baseline_perplexity": report.finetuned_loss,
             "perplexity_original": report.baseline_loss}
    if report.spec.mode != "finetune":
        pairs["perplexity_before"] = report.before_loss
    for name, loss in pairs.items():
        if (value := _ppl(loss)) is not None:
            out[name] = value
    for name, loss in (("ppl_increase_pct", report.after_loss), ("ppl_increase_pct_before", report.before_loss)):
        if name == "ppl_increase_pct_before" and report.spec.mode == "finetune":
            continue
        if loss is not None and math.isfinite(loss) and (ratio := _ppl(loss - report.finetuned_loss)) is not None:
            out[name] = 100.0 * (ratio - 1.0)
    return out


# Task metrics of the fine-tuned baseline and of the parent sit beside the trained model's (the sweep names).
TASK_STAGE_SUFFIX = {"baseline": "_finetuned_baseline", "before": "_before"}


def _scores(stage: dict) -> dict:
    from engine.task_accuracy import TaskScore

    return {name: TaskScore(**d) for name, d in stage.items()}


def task_metrics(report: TrainingReport) -> dict[str, float]:
    """task_acc:<task> etc. of the trained model against the fine-tuned baseline (as a sweep stores a
    recipe's), and the same of the parent with a `_before` suffix and the baseline's accuracy with
    `_finetuned_baseline` (e.g. task_acc_before:tlab_doc_continuation)."""
    if not {"baseline", "after"} <= set(report.tasks):
        return {}
    from engine.task_accuracy import result_metrics

    baseline = _scores(report.tasks["baseline"])
    after = baseline if report.spec.mode == "finetune" else _scores(report.tasks["after"])  # 0 loss, exactly
    out = result_metrics(baseline, after)
    for stage, suffix in TASK_STAGE_SUFFIX.items():
        if not report.tasks.get(stage):
            continue
        scored = baseline if stage == "baseline" else _scores(report.tasks[stage])
        for name, value in result_metrics(baseline, scored).items():
            prefix, task = name.split(":", 1)
            if stage == "baseline" and "loss" in prefix:
                continue  # the baseline against itself
            out[f"{prefix}{suffix}:{task}"] = value
    return out


def _save(store: Any, report: TrainingReport, model_name: str, device: str) -> None:
    if store is None or report.stopped:
        return
    report.result_id = store.save_result(to_result(report, model_name, describe_device(device)))


def run_training_job(payload: dict, progress: Callable) -> list[str]:
    """Job entry point: payload {"spec": TrainingSpec.to_dict()}, validated like any user input and held
    to the web policy. A job killed mid-run resumes from its last checkpoint when queued again."""
    from engine.store import open_store

    if not isinstance(payload, dict) or set(payload) != {"spec"}:
        raise SpecError("A training job's payload must be {\"spec\": <training spec>}; queue it again "
                        "from the app or with `tlab train`.")
    spec = TrainingSpec.from_dict(payload["spec"])
    check_web_sweep(spec.model, DataSpec(source=spec.data))
    report = run_training(spec, open_store(), progress)
    if report.stopped:
        return []
    # the fine-tuned baseline's result, then this one (a fine-tune run is its own baseline)
    return list(dict.fromkeys([spec.baseline().id, report.spec.id]))


def loss_curves(spec: TrainingSpec) -> dict[str, list[dict]]:
    """The loss curves so far, by stage label (the fine-tuned baseline's first): what a live view polls."""
    stages = [spec.baseline()] + ([spec] if spec.mode != "finetune" else [])
    return {s.label: loop.read_loss_log(run_dir(s)) for s in stages}


def training_payload(spec: TrainingSpec) -> dict:
    return {"spec": spec.to_dict()}


__all__ = ["TrainingReport", "loss_curves", "perplexity_metrics", "task_metrics", "run_training", "run_training_job",
           "training_payload", "run_dir",
           "to_result"]
