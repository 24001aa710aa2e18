"""Frozen, typed, JSON-round-trippable specs with a stable content hash.

`SweepSpec` describes one sweep (what the CLI, the app and a job row all build); it expands into one
`ExperimentSpec` per recipe, whose hash is the identity of a result: the same spec is never computed
twice. Both validate on creation, so a bad value is refused before any work with a message that says
what to do; a job row goes through `SweepSpec.from_dict` like any other user input.
"""

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine import registry
from engine.errors import DataError, SpecError

BUNDLED_MODEL = "bundled"
BUNDLED_DIFFUSION = "bundled-diffusion"  # the digits diffusion model trained by this project
BUNDLED_MODELS = (BUNDLED_MODEL, BUNDLED_DIFFUSION)
SCHEMA_VERSION = 1  # of SweepSpec.to_dict(); bump when a field changes meaning
DEFAULT_KIND = "causal_lm"
# Upper bounds that keep a typo from growing memory without end (a 100x larger run is a new spec).
MAX_CALIB_SIZE = 4096
MAX_SEQ_LEN = 32768
MAX_EVAL_TOKENS = 10_000_000
MAX_BATCH = 4096


def whole_number(name: str, value: Any, low: int = 1, high: int | None = None, error=DataError) -> int:
    """`value` as an int if it is a whole number within [low, high]; else `error` saying what to give."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or (isinstance(value, float) and not value.is_integer()):
        raise error(f"{name} must be a whole number, got {value!r}.")
    value = int(value)
    if value < low:
        raise error(f"{name} must be {'a positive whole number' if low == 1 else f'at least {low}'}, got {value}.")
    if high is not None and value > high:
        raise error(f"{name} must be at most {high:,}, got {value:,}; use a smaller value.")
    return value


@dataclass(frozen=True)
class ModelRef:
    """`bundled`, a Hugging Face id, or a local folder (safetensors or GGUF)."""

    source: str = BUNDLED_MODEL
    revision: str | None = None
    gguf_file: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self):
        if not isinstance(self.source, str) or not self.source.strip():
            raise SpecError("The model must be 'bundled', a Hugging Face id or a local folder.")
        for name in ("revision", "gguf_file"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise SpecError(f"The model's {name.replace('_', ' ')} must be text, got {getattr(self, name)!r}.")
        if not isinstance(self.trust_remote_code, bool):
            raise SpecError(f"trust_remote_code must be true or false, got {self.trust_remote_code!r}.")


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
        if not isinstance(self.source, str) or not self.source.strip():
            raise DataError("The data source must be 'bundled', a file path or hf:NAME[:CONFIG]:SPLIT.")
        limits = {"calib_size": MAX_CALIB_SIZE, "calib_seq_len": MAX_SEQ_LEN, "eval_tokens": MAX_EVAL_TOKENS,
                  "eval_seq_len": MAX_SEQ_LEN}
        for name, high in limits.items():  # ints stay ints, so the spec hash does not change with 8 vs 8.0
            object.__setattr__(self, name, whole_number(name.replace("_", " "), getattr(self, name), 1, high))
        object.__setattr__(self, "seed", whole_number("seed", self.seed, 0))


@dataclass(frozen=True)
class Recipe:
    precision: str = "bf16"
    sparsity: str = "none"
    kv_cache: str = "auto"

    def __post_init__(self):
        for name in ("precision", "sparsity", "kv_cache"):
            if not isinstance(getattr(self, name), str):
                raise SpecError(f"A recipe's {name.replace('_', ' ')} must be a name, got {getattr(self, name)!r}.")
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
        if not isinstance(self.batch_sizes, (tuple, list)) or not self.batch_sizes:
            raise DataError("Give at least one batch size (a positive whole number).")
        for name in ("input_len", "output_len"):
            object.__setattr__(self, name, whole_number(name.replace("_", " "), getattr(self, name), 1, MAX_SEQ_LEN))
        object.__setattr__(self, "batch_sizes",
                           tuple(whole_number("batch size", b, 1, MAX_BATCH) for b in self.batch_sizes))


@dataclass(frozen=True)
class GenerationSpec:
    """What a diffusion sweep generates, with the same seeds for the baseline and every recipe, and
    calibrates on. `labels` are class labels (class-conditional models such as the bundled one);
    `prompts` are text prompts (text-to-image pipelines); one of the two is needed."""

    labels: tuple[int, ...] = tuple(range(10))
    prompts: tuple[str, ...] = ()
    images_per_condition: int = 4  # images per label or prompt
    steps: int = 20  # denoising steps
    guidance_scale: float | None = None  # None: no classifier-free guidance
    resolution: int | None = None  # None: the model's own
    scheduler: str = "ddim"
    calib_images: int = 32  # images whose denoising steps feed calibration (every timestep)
    seed: int = 0

    def __post_init__(self):
        for name in ("labels", "prompts"):
            if not isinstance(getattr(self, name), (tuple, list)):
                raise SpecError(f"The generation {name} must be a list.")
        object.__setattr__(self, "labels", tuple(whole_number("class label", v, 0, 100_000, SpecError)
                                                 for v in self.labels))
        if not all(isinstance(p, str) and p.strip() for p in self.prompts):
            raise SpecError("Every prompt must be non-empty text.")
        object.__setattr__(self, "prompts", tuple(self.prompts))
        if not self.labels and not self.prompts:
            raise SpecError("Give the class labels or the prompts to generate images for (the list is empty).")
        for name, high in (("images_per_condition", 1024), ("steps", 1000), ("calib_images", 4096)):
            object.__setattr__(self, name, whole_number(name.replace("_", " "), getattr(self, name), 1, high,
                                                        SpecError))
        object.__setattr__(self, "seed", whole_number("seed", self.seed, 0, error=SpecError))
        if self.resolution is not None:
            object.__setattr__(self, "resolution", whole_number("resolution", self.resolution, 8, 4096, SpecError))
        if self.guidance_scale is not None:
            g = self.guidance_scale
            if isinstance(g, bool) or not isinstance(g, (int, float)) or not (0 <= g <= 100):
                raise SpecError(f"The guidance scale must be a number from 0 to 100 (or none), got {g!r}.")
            object.__setattr__(self, "guidance_scale", float(g))
        if self.scheduler not in ("ddim", "ddpm", "euler", "default"):
            raise SpecError(f"Scheduler {self.scheduler!r} is not one of ddim, ddpm, euler, default.")


TASK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
MAX_TASK_QUESTIONS = 1_000_000
MAX_FEWSHOT = 64


@dataclass(frozen=True)
class TaskAccuracySpec:
    """Task accuracy through lm-evaluation-harness, scored on the baseline and on every recipe's
    calibrated model in memory: lm-eval task names (`tlab_doc_continuation` is the offline one that
    ships with Tradeoff Lab), the first `limit` questions of each (None: all), few-shot examples per
    question, and lm-eval's batch size. Whether lm-eval knows the names is checked where it is
    installed (engine.task_accuracy.check_tasks), before any work: this layer cannot import it."""

    names: tuple[str, ...]
    limit: int | None = None
    num_fewshot: int = 0
    batch_size: int = 8

    def __post_init__(self):
        names = self.names
        if isinstance(names, str) or not isinstance(names, (tuple, list)):
            raise SpecError("The task names must be a list, e.g. [\"tlab_doc_continuation\"].")
        for name in names:
            if not isinstance(name, str) or not TASK_NAME_PATTERN.match(name):
                raise SpecError(f"{name!r} is not a task name (letters, digits, _ . -; at most 100 characters), "
                                "e.g. tlab_doc_continuation or mmlu.")
        names = tuple(dict.fromkeys(names))  # order kept, duplicates dropped: the same tasks, the same id
        if not names:
            raise SpecError("Give at least one task, e.g. tlab_doc_continuation (offline) or mmlu.")
        object.__setattr__(self, "names", names)
        if self.limit is not None:
            object.__setattr__(self, "limit", whole_number("task limit (questions per task)", self.limit, 1,
                                                           MAX_TASK_QUESTIONS, SpecError))
        object.__setattr__(self, "num_fewshot", whole_number("few-shot examples", self.num_fewshot, 0, MAX_FEWSHOT,
                                                             SpecError))
        object.__setattr__(self, "batch_size", whole_number("task batch size", self.batch_size, 1, MAX_BATCH,
                                                            SpecError))


@dataclass(frozen=True)
class ExperimentSpec:
    model: ModelRef = field(default_factory=ModelRef)
    recipe: Recipe = field(default_factory=Recipe)
    data: DataSpec = field(default_factory=DataSpec)
    workload: Workload | None = None  # None: accuracy only, no speed stage
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    kind: str = DEFAULT_KIND  # registry.MODEL_KINDS
    generation: GenerationSpec | None = None  # what a diffusion model generates (None for language models)
    tasks: TaskAccuracySpec | None = None  # task accuracy to score (None: perplexity metrics only)

    def to_dict(self) -> dict[str, Any]:
        return _without_absent_tasks(dataclasses.asdict(self))

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
            kind=d.get("kind", DEFAULT_KIND),
            generation=None if d.get("generation") is None else _build(GenerationSpec, "generation", d["generation"]),
            tasks=_tasks_from(d.get("tasks")),
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
    """Stable content hash of a spec dataclass (or dict): sha256 of canonical JSON, 16 hex digits.
    The default model kind and an absent generation or task-accuracy spec are left out, so results
    stored before those fields existed keep their ids (and a spec with tasks never reuses them)."""
    d = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    if isinstance(d, dict):
        d = {k: v for k, v in d.items() if not (k == "kind" and v == DEFAULT_KIND)
             and not (k in ("generation", "tasks") and v is None)}
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d{1,2})?)$")


def check_device(device: Any) -> str:
    if not isinstance(device, str) or not DEVICE_PATTERN.match(device):
        raise SpecError(f"Device {device!r} is not one of auto, cpu, cuda or cuda:N (N a GPU index).")
    return device


@dataclass(frozen=True)
class SweepSpec:
    """One sweep: a model, the recipes to try on it (the baseline always runs first), the calibration
    and evaluation data, the speed settings (None: accuracy only), the runtime that times it, the
    device, and the experiment name results are grouped under. Validated on creation."""

    model: ModelRef = field(default_factory=ModelRef)
    recipes: tuple[Recipe, ...] = ()
    data: DataSpec = field(default_factory=DataSpec)
    workload: Workload | None = None
    runtime: str = "torch"  # registry.BACKENDS name (aliases such as "pytorch" are accepted)
    device: str = "auto"
    kind: str = DEFAULT_KIND
    experiment: str | None = None
    generation: GenerationSpec | None = None  # diffusion: what to generate (default: GenerationSpec())
    tasks: TaskAccuracySpec | None = None  # language models: task accuracy through lm-eval (None: none)

    def __post_init__(self):
        for name, cls in (("model", ModelRef), ("data", DataSpec)):
            if not isinstance(getattr(self, name), cls):
                raise SpecError(f"SweepSpec.{name} must be a {cls.__name__}.")
        if self.workload is not None and not isinstance(self.workload, Workload):
            raise SpecError("SweepSpec.workload must be a Workload or None.")
        kind = registry.model_kind(self.kind)
        if kind.name == "diffusion" and self.model.source == BUNDLED_MODEL:  # "the bundled model" of that kind
            object.__setattr__(self, "model", dataclasses.replace(self.model, source=BUNDLED_DIFFUSION))
        if kind.name == "diffusion" and self.generation is None:
            object.__setattr__(self, "generation", GenerationSpec())
        if self.generation is not None and (kind.name != "diffusion" or not isinstance(self.generation, GenerationSpec)):
            raise SpecError(f"Generation settings apply to diffusion models, not to a {kind.label.lower()}.")
        if self.tasks is not None and not isinstance(self.tasks, TaskAccuracySpec):
            raise SpecError("SweepSpec.tasks must be a TaskAccuracySpec or None.")
        if self.tasks is not None and kind.name != DEFAULT_KIND:
            raise SpecError(f"Task accuracy through lm-eval applies to language models, not to a {kind.label.lower()} "
                            "(a diffusion sweep measures its own task metric).")
        recipes = tuple(self.recipes)
        if not recipes or not all(isinstance(r, Recipe) for r in recipes):
            raise SpecError("Give at least one recipe to try (e.g. fp8 or int4_awq); the baseline runs with it.")
        for r in recipes:
            applies = (kind.name in registry.precision(r.precision).model_kinds
                       and kind.name in registry.sparsity(r.sparsity).model_kinds
                       and (r.kv_cache == "auto" or kind.name == "causal_lm"))
            if not applies:
                raise SpecError(f"{r.label} does not apply to a {kind.label.lower()}.")
        baseline = Recipe()
        ordered = [baseline] + [r for i, r in enumerate(recipes) if r != baseline and r not in recipes[:i]]
        object.__setattr__(self, "recipes", tuple(ordered))
        runtime = registry.runtime_name(self.runtime) if isinstance(self.runtime, str) else None
        if runtime is None or runtime not in kind.runtimes:
            raise SpecError(f"Runtime {self.runtime!r} cannot time a {kind.label.lower()}; "
                            f"use one of {', '.join(kind.runtimes)}.")
        object.__setattr__(self, "runtime", runtime)
        check_device(self.device)
        if self.experiment is not None and (not isinstance(self.experiment, str) or len(self.experiment) > 200):
            raise SpecError("The experiment name must be text of at most 200 characters.")

    def experiments(self) -> list[ExperimentSpec]:
        """One spec per recipe, baseline first: their ids are the results' ids."""
        return [ExperimentSpec(self.model, r, self.data, self.workload, self.device, self.kind, self.generation,
                               self.tasks) for r in self.recipes]

    def to_dict(self) -> dict[str, Any]:
        return _without_absent_tasks({"schema": SCHEMA_VERSION, **dataclasses.asdict(self),
                                      "recipes": [dataclasses.asdict(r) for r in self.recipes]})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> "SweepSpec":
        """A spec from JSON-like data (a job row, a file): every field checked, none guessed."""
        if not isinstance(d, dict):
            raise SpecError(f"A sweep spec must be a JSON object, got {type(d).__name__}.")
        if d.get("schema") != SCHEMA_VERSION:
            raise SpecError(f"This sweep spec has schema {d.get('schema')!r}; this Tradeoff Lab reads schema "
                            f"{SCHEMA_VERSION}. Build the sweep again (queue it again from the app or the CLI).")
        _only_known("sweep spec", d, {f.name for f in dataclasses.fields(cls)} | {"schema"})
        recipes = d.get("recipes")
        if not isinstance(recipes, list):
            raise SpecError("A sweep spec's 'recipes' must be a list of {precision, sparsity, kv_cache} objects.")
        wl = d.get("workload")
        return cls(
            model=_build(ModelRef, "model", d.get("model", {})),
            recipes=tuple(_build(Recipe, "recipe", r) for r in recipes),
            data=_build(DataSpec, "data", d.get("data", {})),
            workload=None if wl is None else _build(Workload, "workload", wl),
            runtime=d.get("runtime", "torch"), device=d.get("device", "auto"),
            kind=d.get("kind", DEFAULT_KIND), experiment=d.get("experiment"),
            generation=None if d.get("generation") is None else _build(GenerationSpec, "generation", d["generation"]),
            tasks=_tasks_from(d.get("tasks")),
        )

    @classmethod
    def from_json(cls, text: str) -> "SweepSpec":
        try:
            data = json.loads(text)
        except (TypeError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise SpecError(f"The sweep spec is not valid JSON ({exc}).") from None
        return cls.from_dict(data)

    def replace(self, **changes) -> "SweepSpec":
        return dataclasses.replace(self, **changes)


def _without_absent_tasks(d: dict[str, Any]) -> dict[str, Any]:
    """No "tasks" key when none are asked for: specs saved before the field existed read the same."""
    return {k: v for k, v in d.items() if not (k == "tasks" and v is None)}


def _tasks_from(d: Any) -> TaskAccuracySpec | None:
    return None if d is None else _build(TaskAccuracySpec, "tasks", d)


def _only_known(what: str, d: dict, known: set[str]) -> None:
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise SpecError(f"Unknown field(s) in the {what}: {', '.join(unknown)}. "
                        f"Known fields: {', '.join(sorted(known))}.")


def _build(cls, what: str, d: Any):
    """cls(**d) for JSON data, with type mistakes reported as SpecError (never a bare TypeError)."""
    if not isinstance(d, dict):
        raise SpecError(f"The {what} must be a JSON object, got {type(d).__name__}.")
    _only_known(what, d, {f.name for f in dataclasses.fields(cls)})
    if cls is Workload and "batch_sizes" in d:
        if not isinstance(d["batch_sizes"], (list, tuple)):
            raise SpecError("The workload's batch_sizes must be a list of whole numbers.")
        d = {**d, "batch_sizes": tuple(d["batch_sizes"])}
    if cls is TaskAccuracySpec and "names" not in d:
        raise SpecError("The tasks need 'names', e.g. {\"names\": [\"tlab_doc_continuation\"], \"limit\": 40}.")
    if cls is GenerationSpec:  # JSON lists -> tuples (checked in GenerationSpec itself)
        d = {k: tuple(v) if k in ("labels", "prompts") and isinstance(v, list) else v for k, v in d.items()}
    try:
        return cls(**d)
    except TypeError as exc:  # e.g. a precision given as a number
        raise SpecError(f"The {what} is malformed: {exc}.") from None
