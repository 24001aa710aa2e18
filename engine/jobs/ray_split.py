"""How the Ray executor splits a job into parts (pure: no Ray, no processes).

A sweep becomes one part per recipe still to compute, or fewer when the cluster has fewer slots
(GPUs, or CPUs for a CPU sweep) than recipes: each part is a SweepSpec of the baseline plus its
recipes, so it reuses the whole pipeline unchanged (its perplexity reference and, with a speed stage,
a baseline timed on the same machine), and every part loads the model once, not once per recipe.
The baseline result comes back from every part; the coordinator keeps the first. A recipe whose
result is finished in the store is never dispatched. "cuda:N" becomes "cuda" (Ray picks the GPU),
so a result's id is the one a local sweep on "cuda" gives it.
Any other job function runs as a single part.
"""

from dataclasses import dataclass, field
from typing import Any

from engine.errors import TlabError
from engine.spec import Recipe, SweepSpec
from engine.store.job_functions import ENGINE_JOB_FUNCTIONS

SWEEP_FN = ENGINE_JOB_FUNCTIONS[0]  # engine.pipeline:run_sweep_job


@dataclass(frozen=True)
class Part:
    """One Ray task: a job function and its payload, with what it asks the cluster for."""

    key: str  # unique within the job: its recipes' labels, e.g. "INT8 SmoothQuant, FP8" (in the job's log)
    fn: str
    payload: dict
    resources: dict  # Ray task options: num_cpus, num_gpus, accelerator_type
    result_ids: tuple[str, ...] = ()  # the results it is expected to bring back (sweeps)


@dataclass
class Plan:
    parts: list[Part]
    reused: list[str]  # ids already finished in the store: not computed again
    result_ids: list[str] = field(default_factory=list)  # every id the job ends with, in spec order


def slots(cluster: dict[str, float], resources: dict) -> int:
    """How many parts asking for `resources` the cluster can run at once."""
    if resources.get("num_gpus"):
        return int(cluster.get("GPU", 0) // resources["num_gpus"])
    return int(cluster.get("CPU", 0) // max(1, resources.get("num_cpus", 1)))


def cpus_per_part(parts: int, node_cpus: list[float]) -> int:
    """The most CPUs each of `parts` CPU parts can ask for while all of them still run at once on
    these nodes: a part gets the cores a local job on its machine would use, not 1 of them (Ray
    caps the task's threads at its num_cpus). 1 when they cannot all run at once anyway."""
    best = 1
    for k in range(1, int(max(node_cpus, default=1)) + 1):
        if sum(int(c // k) for c in node_cpus) >= parts:
            best = k
    return best


def resources_for(device: str, cluster_has_gpu: bool, gpu_type: str | None = None) -> tuple[str, dict]:
    """(device the part runs on, Ray task options). Ray hands a task its GPU as CUDA device 0, so
    "cuda:N" becomes "cuda"; "auto" means a GPU when the cluster has any."""
    wants_gpu = device.startswith("cuda") or (device == "auto" and cluster_has_gpu)
    if not wants_gpu:
        return "cpu", {"num_cpus": 1, "num_gpus": 0}
    if not cluster_has_gpu:
        raise TlabError(f"This sweep asks for device {device}, but the Ray cluster has no GPU. "
                        "Join a GPU machine to the cluster (ray start --address=...) or use --device cpu.")
    options = {"num_cpus": 1, "num_gpus": 1}
    if gpu_type:
        options["accelerator_type"] = gpu_type  # Ray's label, e.g. H100, A100 (ray.util.accelerators)
    return "cuda", options


def plan_job(fn: str, payload: dict, is_finished, cluster_has_gpu: bool, gpu_type: str | None = None,
             cluster: dict[str, float] | None = None, node_cpus: list[float] | None = None) -> Plan:
    """The parts to dispatch for one job. `is_finished(result_id)` says whether the store already has
    a finished result with that id (a damaged one counts as not finished: it is computed again).
    `cluster`: Ray's cluster resources; no more parts than it can run at once (None: one per recipe).
    `node_cpus`: each live node's CPUs; CPU parts then share them out (None: 1 CPU per part)."""
    if fn != SWEEP_FN:
        return Plan([Part("job", fn, payload, {"num_cpus": 1, "num_gpus": 0})], [])
    if not isinstance(payload, dict) or set(payload) != {"spec"}:
        raise TlabError("A sweep job's payload must be {\"spec\": <sweep spec>}; queue the sweep again "
                        "from the app or with `tlab sweep`.")
    spec = SweepSpec.from_dict(payload["spec"])
    device, resources = resources_for(spec.device, cluster_has_gpu, gpu_type)
    spec = spec.replace(device=device)
    experiments = spec.experiments()  # baseline first; ids as the pipeline computes them on `device`
    ids = [e.id for e in experiments]
    reused = [i for i in ids if is_finished(i)]
    todo = [e for e in experiments[1:] if e.id not in reused]
    n = len(todo) if cluster is None else max(1, min(len(todo), slots(cluster, resources)))
    groups = [todo[i::n] for i in range(n)] if todo else []  # round robin: parts of equal size
    if node_cpus and not resources.get("num_gpus"):
        resources = {**resources, "num_cpus": cpus_per_part(max(1, len(groups)), node_cpus)}
    parts = [_part(spec, [e.recipe for e in g], resources, (ids[0], *(e.id for e in g))) for g in groups]
    if len({p.key for p in parts}) < len(parts):  # labels name recipes uniquely; never rely on it blindly
        parts = [Part(f"{n + 1}:{p.key}", p.fn, p.payload, p.resources, p.result_ids) for n, p in enumerate(parts)]
    if not parts and ids[0] not in reused:  # only the baseline is missing
        parts = [_part(spec, [experiments[0].recipe], resources, (ids[0],))]
    return Plan(parts, reused, ids)


def _part(spec: SweepSpec, recipes: list[Recipe], resources: dict, result_ids: tuple[str, ...]) -> Part:
    key = ", ".join(r.label for r in recipes)
    one = spec.replace(recipes=tuple(recipes))  # SweepSpec puts the baseline first by itself
    return Part(key, SWEEP_FN, {"spec": one.to_dict()}, dict(resources), result_ids)


def results_to_save(returned: list[dict], saved: set[str], reused: set[str]) -> list[dict]:
    """Of a part's returned result records, those the coordinator writes: not one already written
    by an earlier part of this job (the shared baseline), nor one reused from the store."""
    out = []
    for r in returned:
        rid = r.get("id")
        if rid and rid not in saved and rid not in reused:
            out.append(r)
    return out


def job_progress(parts: dict[str, dict]) -> tuple[float, str]:
    """(fraction, stage) of a whole job from its parts' {"fraction", "stage", "state"}."""
    if not parts:
        return 1.0, "reused every result already in the store"
    fraction = sum(min(1.0, max(0.0, float(p.get("fraction") or 0.0))) for p in parts.values()) / len(parts)
    done = sum(1 for p in parts.values() if p.get("state") in ("done", "failed"))
    running = [f"{k}: {p.get('stage')}" for k, p in parts.items() if p.get("state") == "running" and p.get("stage")]
    stage = f"on Ray: {done}/{len(parts)} part(s) finished" + (f"; {running[0]}" if running else "")
    return fraction, stage


def new_lines(sent: list[str], lines: list[str]) -> list[str]:
    """The lines of `lines` after those already sent; the store keeps only a log's last lines, so
    the sent ones may have scrolled off its start."""
    if lines[:len(sent)] == sent:
        return lines[len(sent):]
    for k in range(min(len(sent), len(lines)), 0, -1):  # longest tail of `sent` that starts `lines`
        if sent[-k:] == lines[:k]:
            return lines[k:]
    return lines


def check_feasible(parts: list[Part], cluster: dict[str, float]) -> None:
    """Refuse parts no machine of the cluster can take (Ray would leave them waiting forever)."""
    for part in parts:
        kind = part.resources.get("accelerator_type")
        if kind and not cluster.get(f"accelerator_type:{kind}"):
            have = sorted(k.split(":", 1)[1] for k in cluster if k.startswith("accelerator_type:"))
            raise TlabError(f"No machine in the Ray cluster has a {kind} GPU (GPU types there: "
                            f"{', '.join(have) or 'none'}). Use one of those with --ray-gpu-type, or leave it out.")


def describe_resources(options: dict[str, Any]) -> str:
    """'1 CPU' / '1 GPU (H100)', for the job's log."""
    if options.get("num_gpus"):
        kind = options.get("accelerator_type")
        return f"{options['num_gpus']} GPU" + (f" ({kind})" if kind else "")
    return f"{options.get('num_cpus', 1)} CPU"
