"""Queries from CLI flags or JSON lines (same field names as the flags, without dashes)."""

import json
from pathlib import Path

from engine.errors import DataError
from engine.perf.estimate import BadQuery, Query

FIELDS = ("model", "gpu", "precision", "batch", "isl", "osl", "tp", "sparsity", "kv_cache")
REQUIRED = ("model", "gpu", "precision", "batch", "isl", "osl")


def from_mapping(d: dict) -> Query:
    """A Query from a dict; unknown keys and missing required keys are errors that name them."""
    if not isinstance(d, dict):
        raise BadQuery(f"a query must be a JSON object with {', '.join(REQUIRED)}; got {type(d).__name__}.")
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise BadQuery(f"unknown query field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}.")
    missing = [k for k in REQUIRED if d.get(k) in (None, "")]
    if missing:
        raise BadQuery(f"query is missing {', '.join(missing)}.")
    return Query(model=d["model"], gpu=str(d["gpu"]), precision=str(d["precision"]), batch=d["batch"],
                 isl=d["isl"], osl=d["osl"], tp=d.get("tp") or 1, sparsity=d.get("sparsity"),
                 kv_cache=d.get("kv_cache") or "auto")


def read_jsonl(path: str | Path):
    """Yield (line number, Query or the TlabError that line raises) for each non-empty line."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"query file {p} does not exist.")
    for n, raw in enumerate(p.read_bytes().splitlines(), 1):  # one bad line never stops the others
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield n, BadQuery(f"line {n} is not UTF-8 text.")
            continue
        if not line.strip():
            continue
        try:
            yield n, from_mapping(json.loads(line))
        except json.JSONDecodeError as e:
            yield n, BadQuery(f"line {n} is not valid JSON: {e.msg}.")
        except RecursionError:
            yield n, BadQuery(f"line {n} is nested too deeply to be a query.")
        except BadQuery as e:
            yield n, e
