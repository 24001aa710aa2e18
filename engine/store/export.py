"""Export result records (dicts from Store.list_results) as JSON-ready dicts, CSV text, or a text table.

Pure functions over records; no extra dependencies.
"""

import csv
import io
import json
import math

from engine.store.records import overall_kind

ID_FIELDS = ("id", "experiment", "model", "precision", "sparsity", "kv_cache")


def _kinds(record: dict) -> tuple[str | None, str | None, dict]:
    prov = record.get("provenance") or {}
    acc = prov.get("accuracy") if isinstance(prov.get("accuracy"), dict) else {}
    speed = prov.get("speed") if isinstance(prov.get("speed"), dict) else {}
    return acc.get("kind"), speed.get("kind"), speed


def _json_number(value):
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def metric_names(records: list[dict]) -> list[str]:
    return sorted({name for r in records for name in (r.get("metrics") or {})})


def to_json_records(records: list[dict]) -> list[dict]:
    """One JSON-serializable object per result; every metric also appears as a top-level field."""
    out = []
    for r in records:
        acc_kind, speed_kind, speed = _kinds(r)
        metrics = {k: _json_number(v) for k, v in (r.get("metrics") or {}).items()}
        obj = {k: r.get(k) for k in ID_FIELDS}
        for name, value in metrics.items():
            if name not in obj:
                obj[name] = value
        obj.update({
            "metrics": metrics,
            "units": r.get("units") or {},
            "provenance": overall_kind(acc_kind, speed_kind),
            "provenance_detail": r.get("provenance") or {},
            "device": r.get("device"),
            "backend": speed.get("backend") or speed.get("engine"),
            "versions": r.get("versions") or {},
            "timings": r.get("timings") or {},
            "created_at": r.get("created_at"),
            "spec": r.get("spec") or {},
        })
        if r.get("status") is not None:
            obj["status"] = r["status"]
        out.append(obj)
    return out


def to_json(records: list[dict], indent: int | None = 2) -> str:
    return json.dumps(to_json_records(records), indent=indent, allow_nan=False)


def flat_rows(records: list[dict]) -> tuple[list[str], list[dict]]:
    """Columns and flat rows: identity, one column per metric, provenance kinds, device, backend."""
    names = metric_names(records)
    columns = [*ID_FIELDS, *names, "provenance", "accuracy_provenance", "speed_provenance",
               "device", "backend", "created_at"]
    rows = []
    for r in records:
        acc_kind, speed_kind, speed = _kinds(r)
        metrics = r.get("metrics") or {}
        row = {k: r.get(k) for k in ID_FIELDS}
        row.update({name: metrics.get(name) for name in names})
        row.update(provenance=overall_kind(acc_kind, speed_kind), accuracy_provenance=acc_kind,
                   speed_provenance=speed_kind, device=r.get("device"),
                   backend=speed.get("backend") or speed.get("engine"), created_at=r.get("created_at"))
        rows.append(row)
    return columns, rows


def to_csv(records: list[dict]) -> str:
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


def to_table(records: list[dict], columns: list[str] | None = None) -> str:
    """A fixed-width text table (numbers right-aligned, 4 significant digits)."""
    all_columns, rows = flat_rows(records)
    columns = columns or [c for c in all_columns if c not in ("accuracy_provenance", "speed_provenance", "created_at")]
    if not rows:
        return "(no results)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]

    def fmt(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    lines = [fmt(columns), fmt(["-" * w for w in widths])] + [fmt(line) for line in cells]
    return "\n".join(lines)
