"""TEST DATA ONLY: result records with task-accuracy metrics, shaped by the pipeline's own functions
(engine.task_accuracy.result_metrics / result_provenance) on top of tests.app.results_data records.
The accuracies are made up and never shown outside tests."""

from engine.task_accuracy import TaskScore, result_metrics, result_provenance
from tests.app.results_data import make_record

TASK = "tlab_doc_continuation"


def score(acc: float, se: float, n: int = 40) -> TaskScore:
    return TaskScore(task=TASK, accuracy=acc, stderr=se, n_questions=n, num_fewshot=0, task_version="1.0",
                     lm_eval_version="0.4.13", limit=n)


def task_record(experiment: str, precision: str, i: int, acc: float, base_acc: float = 0.8, se: float = 0.06,
                spread: float | None = 0.04, **kw) -> dict:
    """make_record with task accuracy (vs a baseline scoring `base_acc`) and a speedup spread."""
    record = make_record(experiment, precision, i, **kw)
    base = score(base_acc, se)
    mine = base if precision == "bf16" else score(acc, se)
    record["metrics"].update(result_metrics({TASK: base}, {TASK: mine}))
    record["provenance"]["task_accuracy"] = result_provenance({TASK: mine}, "cpu")
    if spread is not None and precision != "bf16" and "speedup" in record["metrics"]:
        record["metrics"]["speedup_spread"] = record["metrics"]["speedup_spread_bs1"] = spread
    return record
