"""Typed records passed between pipeline, store, plots and estimator (mlflow's entities):

- `Measurement`: one benchmarked (recipe, batch size) point from a runtime backend;
- `Result`: one recipe of one sweep, with its metrics and where each came from.

Both round-trip through plain JSON dicts (`to_dict` / `from_dict`); the store validates a Result
before writing it (engine.store.records).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Measurement:
    """One benchmarked (recipe, batch size) point.

    `metrics` holds whichever of these the backend measures: output_tokens_per_sec,
    output_tokens_per_sec_per_gpu, output_tokens_per_sec_per_user, requests_per_sec,
    decode_tokens_per_sec, prefill_ms, ttft_ms, tpot_ms, request_latency_ms, peak_memory_mb.
    Each is the median over `repeats` runs; `spread` is the relative spread of those runs per
    metric (see engine.runtimes.base.relative_spread). `provenance` is
    {"kind": "measured", "device": {...}, "backend": ..., "versions": {...},
     "command": ... (optional), "workload": {...}}.
    """

    backend: str
    precision: str
    sparsity: str
    batch_size: int
    input_len: int
    output_len: int
    metrics: dict[str, float]
    spread: dict[str, float | None]  # None: unknown (measured once)
    repeats: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


PARTIAL = "partial"  # a Result's status while its sweep runs; "done" once the whole sweep finished


@dataclass
class Result:
    """One recipe's outcome. `provenance` has a part per kind of number ("accuracy", "speed"), each
    {"kind": measured|estimated|published, ...}, and may say in words why a part is missing
    ("speed_not_measured")."""

    id: str  # the ExperimentSpec hash
    model: str
    precision: str
    sparsity: str = "none"
    kv_cache: str = "auto"
    experiment: str | None = None
    status: str = "done"  # or PARTIAL: its sweep was stopped before it finished
    spec: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    device: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    created_at: str | None = None
    error: str | None = None
    owner: str | None = None  # who started the job that computed it (None: the saving process's owner)

    # --- reading the provenance -------------------------------------------------------------
    def part(self, name: str) -> dict[str, Any]:
        """A provenance part ("accuracy", "speed") as a dict; {} when absent or not a part."""
        value = (self.provenance or {}).get(name)
        return value if isinstance(value, dict) else {}

    @property
    def accuracy_kind(self) -> str | None:
        return self.part("accuracy").get("kind")

    @property
    def speed_kind(self) -> str | None:
        return self.part("speed").get("kind")

    @property
    def backend(self) -> str | None:
        speed = self.part("speed")
        return speed.get("backend") or speed.get("engine")

    @property
    def speed_not_measured(self) -> str | None:
        """Why this recipe has accuracy but no measured speed, in words (None when it has, or none was asked)."""
        why = (self.provenance or {}).get("speed_not_measured")
        return str(why) if why else None

    @property
    def speedup_refusals(self) -> dict[str, str]:
        """{batch size: why no speedup is reported} for this result's speed measurements."""
        return {str(k): str(v) for k, v in (self.part("speed").get("speedup_refused") or {}).items()}

    @property
    def measurements(self) -> list[Measurement]:
        return [Measurement.from_dict(m) for m in self.part("speed").get("measurements") or []
                if isinstance(m, dict)]

    @property
    def is_baseline(self) -> bool:
        from engine import registry

        return self.precision in registry.BASELINES and self.sparsity == "none" and self.kv_cache == "auto"

    # --- plain data -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["error"] is None:
            del d["error"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        """A Result from a record dict (unknown keys are ignored: the store validates what it writes)."""
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


# --- task accuracy metrics (issue #12) ------------------------------------------------------------
# One set per lm-eval task, named "<prefix><task>" so a result can carry several tasks side by side.
TASK_ACC = "task_acc:"  # accuracy, 0..1
TASK_ACC_STDERR = "task_acc_stderr:"  # its standard error as lm-eval reports it
TASK_LOSS_PTS = "task_loss_pts:"  # baseline - recipe, in percentage points (positive: worse)
TASK_LOSS_PTS_STDERR = "task_loss_pts_stderr:"  # sqrt(se_baseline² + se_recipe²), in points


def task_names_in(metric_names) -> list[str]:
    """The tasks that have a task-accuracy loss among these metric (or frame column) names, sorted."""
    return sorted({str(n)[len(TASK_LOSS_PTS):] for n in metric_names if str(n).startswith(TASK_LOSS_PTS)})
