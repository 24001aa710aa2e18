"""Export results (engine.store.entities.Result, from Store.list_results) as JSON-ready dicts, CSV text,
or a text table.

Pure functions over results; no extra dependencies.
"""

import csv
import io
import json
import math

from engine.store.entities import Result
from engine.store.records import overall_kind

ID_FIELDS = ("id", "experiment", "model", "precision", "sparsity", "kv_cache")


def _identity(r: Result) -> dict:
    return {k: getattr(r, k) for k in ID_FIELDS}


def _json_number(value):
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metric_names(records: list[Result]) -> list[str]:
    return sorted({name for r in records for name in r.metrics})


def to_json_records(records: list[Result]) -> list[dict]:
    """One JSON-serializable object per result; every metric also appears as a top-level field."""
    out = []
    for r in records:
        metrics = {k: _json_number(v) for k, v in r.metrics.items()}
        obj = _identity(r)
        for name, value in metrics.items():
            if name not in obj:
                obj[name] = value
        obj.update({
            "metrics": metrics,
            "units": r.units,
            "provenance": overall_kind(r.accuracy_kind, r.speed_kind),
            "provenance_detail": r.provenance,
            "device": r.device,
            "backend": r.backend,
            "versions": r.versions,
            "timings": r.timings,
            "created_at": r.created_at,
            "owner": r.owner,  # who started the job that computed it
            "spec": r.spec,
        })
        if r.status is not None:
            obj["status"] = r.status
        out.append(obj)
    return out


def to_json(records: list[Result], indent: int | None = 2) -> str:
    return json.dumps(to_json_records(records), indent=indent, allow_nan=False)


TASK_COLUMNS = ("task_accuracy_provenance", "task_accuracy_detail")


def task_detail(r: Result) -> str | None:
    """Where a result's task accuracy comes from, in one cell: per task its version, questions,
    few-shot and limit, and the lm-eval version."""
    part = r.part("task_accuracy")
    tasks = part.get("tasks") if isinstance(part.get("tasks"), dict) else {}
    if not tasks:
        return None
    each = [f"{t.get('task')} v{t.get('task_version')}, {t.get('n_questions')} questions, {t.get('num_fewshot')}-shot"
            + (f", first {t['limit']}" if t.get("limit") else "") for t in tasks.values() if isinstance(t, dict)]
    return "; ".join(each) + f" (lm-eval {part.get('lm_eval_version')})"


def flat_rows(records: list[Result]) -> tuple[list[str], list[dict]]:
    """Columns and flat rows: identity, one column per metric, provenance kinds, device, backend; and
    where any result has task accuracy, its provenance kind and details."""
    names = metric_names(records)
    with_tasks = any(r.part("task_accuracy") for r in records)
    columns = [*ID_FIELDS, *names, "provenance", "accuracy_provenance", "speed_provenance",
               *(TASK_COLUMNS if with_tasks else ()), "device", "backend", "created_at", "owner"]
    rows = []
    for r in records:
        row = _identity(r)
        row.update({name: r.metrics.get(name) for name in names})
        row.update(provenance=overall_kind(r.accuracy_kind, r.speed_kind), accuracy_provenance=r.accuracy_kind,
                   speed_provenance=r.speed_kind, device=r.device, backend=r.backend, created_at=r.created_at,
                   owner=r.owner)
        if with_tasks:
            row.update(task_accuracy_provenance=r.part("task_accuracy").get("kind"),
                       task_accuracy_detail=task_detail(r))
        rows.append(row)
    return columns, rows


def to_csv(records: list[Result]) -> str:
    columns, rows = flat_rows(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    return str(value)


def to_table(records: list[Result], columns: list[str] | None = None) -> str:
    """A fixed-width text table (numbers right-aligned, 4 significant digits)."""
    all_columns, rows = flat_rows(records)
    columns = columns or [c for c in all_columns
                          if c not in ("accuracy_provenance", "speed_provenance", "created_at", "owner", *TASK_COLUMNS)]
    if not rows:
        return "(no results)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]

    def fmt(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    lines = [fmt(columns), fmt(["-" * w for w in widths])] + [fmt(line) for line in cells]
    return "\n".join(lines)
