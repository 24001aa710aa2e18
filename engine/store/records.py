"""Result records (plain dicts) <-> table rows. Pure functions; all validation happens here, before
any database write, so a bad record is refused with a clear message."""

import json
import math
import numbers
import time
from datetime import datetime, timezone
from typing import Any

from engine.auth import DEFAULT_OWNER, OWNER_MAX, current_owner
from engine.errors import StoreError

PROVENANCE_KINDS = ("measured", "estimated", "published")
# Columns of the results frame; a metric may not take one of these names.
FRAME_COLUMNS = ("id", "experiment", "model", "precision", "sparsity", "kv_cache", "status", "device",
                 "backend", "accuracy_kind", "speed_kind", "provenance", "created_at", "owner")
# Metrics are also flattened into exports next to these fields, so they cannot be metric names either.
RESERVED_NAMES = FRAME_COLUMNS + ("metrics", "units", "provenance_detail", "versions", "timings", "spec",
                                  "error")


def now() -> float:
    return time.time()


def to_iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(round(ts, 6), timezone.utc).isoformat()


def from_iso(value: Any) -> float:
    """ISO 8601 string (naive means UTC), datetime, or UNIX seconds -> UNIX seconds."""
    if value is None:
        return now()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise StoreError(f"created_at '{value}' is not an ISO 8601 time "
                             "(e.g. 2026-01-31T12:00:00+00:00).") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    raise StoreError(f"created_at must be an ISO 8601 string, got {type(value).__name__}.")


def _json_ok(field: str, value: Any, rid: str) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as e:
        raise StoreError(f"Result {rid}: field '{field}' cannot be saved as JSON ({e}).") from None
    return value


def _dict_field(record: dict, field: str, rid: str) -> dict:
    value = record.get(field) or {}
    if not isinstance(value, dict):
        raise StoreError(f"Result {rid}: '{field}' must be a dict, got {type(value).__name__}.")
    return _json_ok(field, value, rid)


def _kind(provenance: dict, part: str, rid: str) -> str | None:
    sub = provenance.get(part)
    if sub is None:
        return None
    if not isinstance(sub, dict):
        raise StoreError(f"Result {rid}: provenance['{part}'] must be a dict with a 'kind'.")
    kind = sub.get("kind")
    if kind not in PROVENANCE_KINDS:
        raise StoreError(f"Result {rid}: provenance['{part}']['kind'] is {kind!r}; it must be one of "
                         f"{', '.join(PROVENANCE_KINDS)} (every number says where it came from).")
    return kind


def _metric_value(name: str, value: Any, rid: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise StoreError(f"Result {rid}: metric '{name}' must be a number, got {value!r}.")
    value = float(value)
    return None if math.isnan(value) else value  # NaN is stored as NULL and read back as NaN


def record_to_rows(record: dict, experiment_id: int | None) -> tuple[dict, list[dict]]:
    """Validate a result record; return (results row, metrics rows)."""
    if not isinstance(record, dict):
        raise StoreError(f"A result record must be a dict, got {type(record).__name__}.")
    rid = record.get("id")
    if not isinstance(rid, str) or not rid or len(rid) > 64:
        raise StoreError(f"A result record needs an 'id' (the spec hash, at most 64 characters); got {rid!r}.")
    spec = _dict_field(record, "spec", rid)
    recipe = spec.get("recipe", {}) if isinstance(spec.get("recipe"), dict) else {}
    model_ref = spec.get("model", {}) if isinstance(spec.get("model"), dict) else {}
    row: dict[str, Any] = {"id": rid, "experiment_id": experiment_id}
    fallbacks = {"model": model_ref.get("source"), "precision": recipe.get("precision"),
                 "sparsity": recipe.get("sparsity", "none"), "kv_cache": recipe.get("kv_cache", "auto")}
    for key, fallback in fallbacks.items():
        value = record.get(key) or fallback
        if not isinstance(value, str) or not value:
            raise StoreError(f"Result {rid}: '{key}' is missing (give it in the record or in spec).")
        row[key] = value
    provenance = _dict_field(record, "provenance", rid)
    speed = provenance.get("speed") if isinstance(provenance.get("speed"), dict) else {}
    row.update(
        status=str(record.get("status") or "done"),
        device=record.get("device"),
        accuracy_kind=_kind(provenance, "accuracy", rid),
        speed_kind=_kind(provenance, "speed", rid),
        backend=speed.get("backend") or speed.get("engine"),
        spec=spec,
        versions=_dict_field(record, "versions", rid),
        timings=_dict_field(record, "timings", rid),
        provenance=provenance,
        error=record.get("error"),
        created_at=from_iso(record.get("created_at")),
        # Who started the job that computed it; a record without one belongs to this process's owner.
        owner=str(record.get("owner") or current_owner())[:OWNER_MAX],
    )
    metrics = _dict_field(record, "metrics", rid)
    units = _dict_field(record, "units", rid)
    for name in units:
        if name not in metrics:
            raise StoreError(f"Result {rid}: unit given for '{name}', which is not a metric.")
    metric_rows = []
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or name in RESERVED_NAMES or len(name) > 100:
            raise StoreError(f"Result {rid}: {name!r} cannot be a metric name (empty, too long, or one "
                             f"of the reserved names {', '.join(RESERVED_NAMES)}).")
        unit = units.get(name)
        metric_rows.append({"result_id": rid, "name": name, "value": _metric_value(name, value, rid),
                            "unit": None if unit is None else str(unit)})
    return row, metric_rows


class UnreadableResult(StoreError):
    """A stored result that cannot be read back as written (a damaged row or page): never reused."""

    def __init__(self, result_id: str, why: str):
        self.result_id, self.why = result_id, why
        super().__init__(f"Result {result_id} in the store cannot be read: {why}. Its stored row is damaged; "
                         "run its sweep again to compute it afresh (a sweep recomputes unreadable results).")

    def __reduce__(self):  # picklable across the job's process boundary
        return type(self), (self.result_id, self.why)


JSON_FIELDS = ("spec", "versions", "timings", "provenance")


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _stored_dict(row: dict, field: str) -> dict:
    """A JSON column as read raw from the database (text from SQLite, already parsed from PostgreSQL)."""
    value = row[field]
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError as e:  # also bytes that are not UTF-8
            raise UnreadableResult(row["id"], f"its '{field}' is not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise UnreadableResult(row["id"], f"its '{field}' holds {type(value).__name__}, not a JSON object")
    return value


def _stored_metric(rid: str, m: dict) -> float:
    value = m["value"]
    if value is None:
        return math.nan
    if not _is_number(value):
        raise UnreadableResult(rid, f"metric '{m['name']}' holds {str(value)[:40]!r}, not a number")
    return float(value)


def rows_to_record(row: dict, experiment: str | None, metric_rows: list) -> dict:
    """A results row (mapping, JSON columns raw or parsed) and its metric rows -> the record dict
    callers see. Raises UnreadableResult for a row that cannot have been written by `record_to_rows`."""
    metrics = {m["name"]: _stored_metric(row["id"], m) for m in metric_rows}
    units = {m["name"]: m["unit"] for m in metric_rows if m["unit"] is not None}
    if not _is_number(row["created_at"]):
        raise UnreadableResult(row["id"], f"its creation time holds {str(row['created_at'])[:40]!r}")
    record = {
        "id": row["id"], "experiment": experiment, "model": row["model"], "precision": row["precision"],
        "sparsity": row["sparsity"], "kv_cache": row["kv_cache"], "status": row["status"],
        "metrics": metrics, "units": units, "device": row["device"], "created_at": to_iso(row["created_at"]),
        "owner": row.get("owner") or DEFAULT_OWNER,
        **{field: _stored_dict(row, field) for field in JSON_FIELDS},
    }
    if row["error"]:
        record["error"] = row["error"]
    return record


def overall_kind(accuracy_kind: str | None, speed_kind: str | None) -> str | None:
    """One word for a result: "measured" if its speed was measured, else the accuracy's kind."""
    if speed_kind == "measured":
        return "measured"
    return accuracy_kind or speed_kind
