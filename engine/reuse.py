"""Which of a sweep's results to compute: the same spec is never computed twice."""

from collections.abc import Callable
from typing import Any


def results_to_compute(specs: list, store: Any, with_speed: bool, force: bool,
                       progress: Callable[[float, str], None]) -> list:
    """The ExperimentSpecs (baseline first) that have no finished result in `store`, or all with
    `force`. With a speed stage the baseline runs again whenever anything does: speedups need it
    measured in the same run. Reports what it reuses."""
    todo = [s for s in specs if force or not _reusable(store, s.id, progress)]
    if todo and with_speed and specs[0] not in todo:
        todo.insert(0, specs[0])
    if not todo:
        progress(1.0, f"reused all {len(specs)} result(s) already in the store")
    elif len(todo) < len(specs):
        progress(0.0, f"reused {len(specs) - len(todo)} result(s) already in the store")
    return todo


def _reusable(store: Any, result_id: str, progress: Callable[[float, str], None]) -> bool:
    """A finished result; a damaged one is computed again (and replaced) with a warning naming it."""
    from engine.store.records import UnreadableResult

    try:
        return store.has_finished_result(result_id)
    except UnreadableResult as e:
        progress(0.0, f"warning: stored result {result_id} cannot be read ({e.why}); computing it again")
        return False
