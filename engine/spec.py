"""Frozen, typed, JSON-round-trippable experiment specs with a stable content hash.

The hash of a spec is its identity: the same spec is never computed twice.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from engine import registry
from engine.errors import DataError

BUNDLED_MODEL = "bundled"


@dataclass(frozen=True)
class ModelRef:
    """`bundled`, a Hugging Face id, or a local folder (safetensors or GGUF)."""

    source: str = BUNDLED_MODEL
    revision: str | None = None
    gguf_file: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class DataSpec:
    """Calibration and evaluation text. `bundled` is the shipped corpus; otherwise a file path
    (.txt or .jsonl with a "text" field) or `hf:NAME[:CONFIG]:SPLIT`."""

    source: str = "bundled"
    calib_size: int = 32  # number of calibration sequences
    calib_seq_len: int = 256  # tokens per calibration sequence
    eval_tokens: int = 8192  # held-out tokens for evaluation
    eval_seq_len: int = 512
    seed: int = 1234

    def __post_init__(self):
        for name in ("calib_size", "calib_seq_len", "eval_tokens", "eval_seq_len"):
            if int(getattr(self, name)) <= 0:
                raise DataError(f"{name.replace('_', ' ')} must be a positive whole number, "
                                f"got {getattr(self, name)}.")


@dataclass(frozen=True)
class Recipe:
    precision: str = "bf16"
    sparsity: str = "none"
    kv_cache: str = "auto"

    def __post_init__(self):
        registry.precision(self.precision)
        registry.sparsity(self.sparsity)
        registry.kv_cache(self.kv_cache)

    @property
    def is_baseline(self) -> bool:
        return self.precision in registry.BASELINES and self.sparsity == "none" and self.kv_cache == "auto"

    @property
    def label(self) -> str:
        parts = [registry.precision(self.precision).label]
        if self.sparsity != "none":
            parts.append(registry.sparsity(self.sparsity).label)
        if self.kv_cache != "auto":
            parts.append(f"KV {self.kv_cache.upper()}")
        return " + ".join(parts)


@dataclass(frozen=True)
class Workload:
    """What the speed benchmark runs: fixed input/output lengths at each batch size."""

    input_len: int = 128
    output_len: int = 64
    batch_sizes: tuple[int, ...] = (1, 8)

    def __post_init__(self):
        if self.input_len <= 0 or self.output_len <= 0 or not self.batch_sizes or min(self.batch_sizes) <= 0:
            raise DataError("Input length, output length and every batch size must be positive.")


@dataclass(frozen=True)
class ExperimentSpec:
    model: ModelRef = field(default_factory=ModelRef)
    recipe: Recipe = field(default_factory=Recipe)
    data: DataSpec = field(default_factory=DataSpec)
    workload: Workload | None = None  # None: accuracy only, no speed stage
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ExperimentSpec":
        wl = d.get("workload")
        if wl is not None:
            wl = Workload(**{**wl, "batch_sizes": tuple(wl.get("batch_sizes", (1, 8)))})
        return cls(
            model=ModelRef(**d.get("model", {})),
            recipe=Recipe(**d.get("recipe", {})),
            data=DataSpec(**d.get("data", {})),
            workload=wl,
            device=d.get("device", "auto"),
        )

    @classmethod
    def from_json(cls, s: str) -> "ExperimentSpec":
        return cls.from_dict(json.loads(s))

    @property
    def id(self) -> str:
        return spec_hash(self)

    def replace(self, **changes) -> "ExperimentSpec":
        return dataclasses.replace(self, **changes)


def spec_hash(obj: Any) -> str:
    """Stable content hash of a spec dataclass (or dict): sha256 of canonical JSON, 16 hex digits."""
    d = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
