"""Task accuracy of an in-memory model through lm-evaluation-harness (issue #12).

`score(model, tokenizer, ["tlab_doc_continuation", "mmlu"], limit=None, batch_size=8)` wraps the
model object as lm-eval's HFLM (no export, no reload: a quantized or fake-quantized model is scored
as it is) and returns a `TaskScore` per task: accuracy, its standard error as lm-eval reports it,
and where the number comes from.

Task names: `tlab_doc_continuation`, the offline multiple-choice task that ships in
engine/tasks/doc_continuation/ (built from the bundled held-out evaluation text), and any task,
group or tag lm-eval knows (mmlu, hellaswag, arc_easy, ...) whose dataset is reachable or already in
the local Hugging Face cache. `accuracy_loss_points` turns a baseline and a candidate score into a
loss in percentage points with a combined standard error.

Inside a sweep (a spec.TaskAccuracySpec on the SweepSpec), engine.pipeline calls `check_tasks` before
any work, `score_tasks` on the baseline once and on each recipe's calibrated model, and stores
`result_metrics` (task_acc:<task>, task_acc_stderr:<task>, task_loss_pts:<task>,
task_loss_pts_stderr:<task>) with `result_provenance` as the Result's "task_accuracy" part.

Importing this module is light: torch and lm_eval are imported when scoring.
"""

import contextlib
import difflib
import functools
import json
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import TlabError, UnknownNameError
from engine.store.entities import TASK_ACC, TASK_ACC_STDERR, TASK_LOSS_PTS, TASK_LOSS_PTS_STDERR
from engine.tasks.build_doc_continuation import DATA_FILE as OFFLINE_DATA
from engine.tasks.build_doc_continuation import DEFAULT_DIR as OFFLINE_TASK_DIR
from engine.tasks.build_doc_continuation import TASK_NAME as OFFLINE_TASK
from engine.tasks.build_doc_continuation import YAML_FILE as OFFLINE_YAML

# The metric reported as a task's accuracy: the first of these it reports (else the first by name).
PREFERRED_METRICS = ("acc", "acc_norm", "exact_match")
INSTALL_HINT = "Task accuracy needs lm-evaluation-harness: pip install 'tradeoff-lab[eval]' (or pip install lm-eval)"


@dataclass
class TaskScore:
    """One task's accuracy (0..1) and its standard error, with provenance."""

    task: str
    accuracy: float
    stderr: float | None  # lm-eval's `<metric>_stderr` (standard error of the mean), None when it gives none
    n_questions: int
    num_fewshot: int
    task_version: str
    lm_eval_version: str
    metric: str = "acc"
    source: str = "measured"
    seconds: float = 0.0
    limit: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # every number lm-eval reported for the task

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AccuracyLoss:
    """baseline - candidate, in percentage points; stderr combines both (independent samples)."""

    points: float
    stderr_points: float | None

    def __str__(self) -> str:
        se = "" if self.stderr_points is None else f" ± {self.stderr_points:.1f}"
        return f"{self.points:+.1f}{se} points"


def accuracy_loss_points(baseline: TaskScore, candidate: TaskScore) -> AccuracyLoss:
    """Accuracy lost by `candidate` against `baseline`, in percentage points (positive: worse).

    The standard error is sqrt(se_b² + se_c²): it treats the two scores as independent, which is
    conservative when both ran on the same questions (their errors are positively correlated)."""
    if baseline.task != candidate.task:
        raise TlabError(f"Cannot compare accuracy on different tasks ({baseline.task} vs {candidate.task}).")
    if (baseline.n_questions, baseline.num_fewshot) != (candidate.n_questions, candidate.num_fewshot):
        raise TlabError(
            f"{baseline.task}: the baseline ran {baseline.n_questions} questions {baseline.num_fewshot}-shot and "
            f"the candidate {candidate.n_questions} questions {candidate.num_fewshot}-shot; score both the same way.")
    points = 100.0 * (baseline.accuracy - candidate.accuracy)
    if baseline.stderr is None or candidate.stderr is None:
        return AccuracyLoss(points, None)
    return AccuracyLoss(points, 100.0 * math.hypot(baseline.stderr, candidate.stderr))


def _lm_eval():
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager  # noqa: F401
    except ImportError as exc:
        raise TlabError(INSTALL_HINT) from exc
    return lm_eval


def _lm_eval_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm-eval")
    except PackageNotFoundError:  # pragma: no cover - a source checkout of lm-eval
        return getattr(_lm_eval(), "__version__", "unknown")


@functools.lru_cache(maxsize=1)
def _lm_eval_tasks():
    """lm-eval's own TaskManager. Indexing its ~15,000 task files takes ~15 s: once per process."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def _offline_task_dir(tmp: Path) -> Path:
    """A copy of the task's YAML whose data file is an absolute path: lm-eval hands `data_files` to
    datasets.load_dataset as is, which resolves a relative path against the working directory."""
    data = OFFLINE_TASK_DIR / OFFLINE_DATA
    text = (OFFLINE_TASK_DIR / OFFLINE_YAML).read_text(encoding="utf-8")
    if not data.is_file():
        raise TlabError(f"The data of {OFFLINE_TASK} is missing ({data}). Rebuild it: "
                        "python -m engine.tasks.build_doc_continuation")
    fixed, n = re.subn(rf"^(\s*test:\s*){re.escape(OFFLINE_DATA)}\s*$",
                       lambda m: m.group(1) + json.dumps(str(data)), text, flags=re.M)
    if n != 1:
        raise TlabError(f"{OFFLINE_TASK_DIR / OFFLINE_YAML} does not name its data file as "
                        f"'test: {OFFLINE_DATA}'; rebuild it: python -m engine.tasks.build_doc_continuation")
    (tmp / OFFLINE_YAML).write_text(fixed, encoding="utf-8")
    return tmp


def check_task_names(tasks: list[str]) -> None:
    """Raise UnknownNameError for a name neither ours nor lm-eval's, listing close names."""
    if not tasks:
        raise TlabError(f"Give at least one task, e.g. {OFFLINE_TASK} (offline) or mmlu.")
    others = [t for t in tasks if t != OFFLINE_TASK]
    if not others:
        return
    _lm_eval()
    known = set(_lm_eval_tasks().all_tasks)
    for name in others:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known | {OFFLINE_TASK}), n=6, cutoff=0.6)
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise UnknownNameError(
                f"Unknown task '{name}'.{hint} Use {OFFLINE_TASK} (offline, ships with Tradeoff Lab) "
                "or a task name from `lm-eval ls tasks`.")


def _task_manager(name: str, tmp: Path):
    """Our offline task from its own folder (no need to index lm-eval's tasks); any other from lm-eval's."""
    if name != OFFLINE_TASK:
        return _lm_eval_tasks()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(_offline_task_dir(tmp)), include_defaults=False)


@contextlib.contextmanager
def _hub_offline_when_unreachable(tasks: list[str]):
    """When the Hugging Face hub cannot be reached, datasets and huggingface_hub read their local
    cache only, instead of retrying every request for ~25 s before failing."""
    if all(t == OFFLINE_TASK for t in tasks):
        yield
        return
    from engine.models.loader import hub_reachable

    if hub_reachable():
        yield
        return
    import datasets.config
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _load(tm, name: str):
    """The task (or group/tag) objects, its dataset loaded; a clear error when it cannot be reached."""
    try:
        if hasattr(tm, "load"):  # lm-eval >= 0.4.10
            loaded = tm.load([name])
            if name in loaded["groups"]:
                return [loaded["groups"][name]]
            return list(loaded["tasks"].values())
        return [name]  # older lm-eval: simple_evaluate loads it
    except Exception as exc:
        raise _dataset_error(name, exc) from exc


def _dataset_error(name: str, exc: Exception) -> TlabError:
    text = f"{type(exc).__name__}: {exc}"
    if name == OFFLINE_TASK:
        return TlabError(f"Could not load the offline task {OFFLINE_TASK} ({text}). Rebuild it: "
                         "python -m engine.tasks.build_doc_continuation")
    return TlabError(
        f"The dataset of task '{name}' could not be loaded ({text[:400]}). It is fetched from the Hugging Face "
        "hub, which is not reachable from here (offline?) and it is not in the local cache. Run the task once "
        "on a machine with internet to cache it (or copy ~/.cache/huggingface/datasets), or use the offline "
        f"task {OFFLINE_TASK}.")


def _pick_metric(result: dict[str, Any]) -> str:
    names = {k.split(",")[0] for k in result if "," in k and not k.split(",")[0].endswith("_stderr")}
    for m in PREFERRED_METRICS:
        if m in names:
            return m
    if not names:
        raise TlabError(f"lm-eval reported no metric ({sorted(result)}).")
    return sorted(names)[0]


def _metric(result: dict[str, Any], name: str) -> float | None:
    for key, value in result.items():
        if key.split(",")[0] == name and isinstance(value, (int, float)):
            return float(value)
    return None


def _n_questions(results: dict[str, Any], name: str) -> int:
    samples = results.get("n-samples", {})
    if name in samples:
        s = samples[name]
        return int(s.get("effective", s.get("original", 0)))
    children = results.get("group_subtasks", {}).get(name) or []  # a group: the sum of its subtasks
    return sum(_n_questions(results, c) for c in children)


def _to_score(results: dict[str, Any], name: str, limit: int | None, seconds: float) -> TaskScore:
    section = results.get("groups", {}).get(name) or results["results"].get(name)
    if section is None:
        raise TlabError(f"lm-eval returned no result for '{name}' (got {sorted(results['results'])}).")
    metric = _pick_metric(section)
    acc = _metric(section, metric)
    se = _metric(section, f"{metric}_stderr")
    n_shot = results.get("n-shot", {}).get(name)
    if n_shot is None:  # a group: its subtasks' (equal) few-shot count
        shots = {v for k, v in results.get("n-shot", {}).items() if k in results.get("group_subtasks", {}).get(name, [])}
        n_shot = shots.pop() if len(shots) == 1 else 0
    metrics = {k.split(",")[0]: float(v) for k, v in section.items()
               if "," in k and isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
    return TaskScore(task=name, accuracy=acc, stderr=se, n_questions=_n_questions(results, name),
                     num_fewshot=int(n_shot), task_version=str(results.get("versions", {}).get(name, "")),
                     lm_eval_version=_lm_eval_version(), metric=metric, seconds=seconds, limit=limit,
                     metrics=metrics)


def score(model: Any, tokenizer: Any, tasks: list[str], limit: int | None = None, batch_size: int = 8,
          num_fewshot: int = 0) -> dict[str, TaskScore]:
    """Score `model` (a transformers causal LM object, on its device) on each task through lm-eval.

    `limit`: the first N questions of each task (None: all). Returns {task name: TaskScore}."""
    tasks = list(dict.fromkeys(tasks))
    if limit is not None and limit < 1:
        raise TlabError(f"limit must be at least 1 question (got {limit}); None scores every question.")
    if num_fewshot < 0:
        raise TlabError(f"num_fewshot must be 0 or more (got {num_fewshot}).")
    _lm_eval()
    check_task_names(tasks)
    from lm_eval import evaluator
    from lm_eval.models.huggingface import HFLM

    if getattr(model.config, "architectures", None) is None:  # GGUF-loaded configs lack it
        model.config.architectures = [type(model).__name__]
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    lm = HFLM(pretrained=model, tokenizer=tokenizer, backend="causal", batch_size=batch_size)
    scores: dict[str, TaskScore] = {}
    with tempfile.TemporaryDirectory(prefix="tlab-tasks-") as tmp, _hub_offline_when_unreachable(tasks):
        for name in tasks:
            start = time.perf_counter()
            tm = _task_manager(name, Path(tmp))
            objs = _load(tm, name)
            out = evaluator.simple_evaluate(
                model=lm, tasks=objs, task_manager=tm, num_fewshot=num_fewshot, limit=limit,
                batch_size=batch_size, log_samples=False, bootstrap_iters=1000)
            scores[name] = _to_score(out, name, limit, time.perf_counter() - start)
    return scores


# --- inside a sweep (engine.pipeline) --------------------------------------------------------------

def check_tasks(tasks: Any) -> None:
    """Before any work: lm-eval is installed (INSTALL_HINT if not) and knows every name of a
    spec.TaskAccuracySpec (close names if not). The spec layer cannot check this itself."""
    _lm_eval()
    check_task_names(list(tasks.names))


def score_tasks(model: Any, tokenizer: Any, tasks: Any) -> dict[str, TaskScore]:
    """`score` with the settings of a spec.TaskAccuracySpec."""
    return score(model, tokenizer, list(tasks.names), limit=tasks.limit, batch_size=tasks.batch_size,
                 num_fewshot=tasks.num_fewshot)


def result_metrics(baseline: dict[str, TaskScore], candidate: dict[str, TaskScore]) -> dict[str, float]:
    """A Result's task metrics (engine.store.entities names): accuracy and its stderr per task, and
    the loss in points against the baseline with its combined stderr. The baseline against itself
    loses exactly 0 points, with no error to show."""
    out: dict[str, float] = {}
    for name, cand in candidate.items():
        out[TASK_ACC + name] = cand.accuracy
        if cand.stderr is not None:
            out[TASK_ACC_STDERR + name] = cand.stderr
        if cand is baseline[name]:
            out[TASK_LOSS_PTS + name] = 0.0
            continue
        loss = accuracy_loss_points(baseline[name], cand)
        out[TASK_LOSS_PTS + name] = loss.points
        if loss.stderr_points is not None:
            out[TASK_LOSS_PTS_STDERR + name] = loss.stderr_points
    return out


def result_provenance(scores: dict[str, TaskScore], device: Any) -> dict[str, Any]:
    """The Result's "task_accuracy" provenance part: measured, where, by which lm-eval, and per task
    the version, questions, few-shot, limit and metric behind the numbers."""
    first = next(iter(scores.values()))
    return {
        "kind": "measured", "device": device,
        "engine": f"lm-evaluation-harness {first.lm_eval_version}, the calibrated model scored in memory",
        "lm_eval_version": first.lm_eval_version,
        "tasks": {name: {"task": name, "task_version": s.task_version, "n_questions": s.n_questions,
                         "num_fewshot": s.num_fewshot, "limit": s.limit, "metric": s.metric,
                         "seconds": round(s.seconds, 2)} for name, s in scores.items()},
    }
