"""`tlab` command line: sweep, results, estimate, worker.

Every subcommand prints a plain error (no traceback) for user mistakes and exits with status 2.
"""

import argparse
import contextlib
import json
import sys

from engine import registry
from engine.errors import TlabError

SPEED_COLUMNS = ("speedup", "output_tokens_per_sec", "decode_tokens_per_sec")
# What `tlab sweep` tries when --precisions is not given, per model kind.
DEFAULT_PRECISIONS = {"causal_lm": ("fp8", "int8_sq", "int4_awq", "w4a8_awq"), "diffusion": ("int8_sq", "fp8")}


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _batch_sizes(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in _csv(s))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"batch sizes must be whole numbers separated by commas: {s}") from exc


def add_sweep_parser(sub) -> None:
    p = sub.add_parser("sweep", help="calibrate and evaluate a grid of recipes (and benchmark them)",
                       description="Run every precision x sparsity recipe on one model; results go to the store.")
    p.add_argument("--model", default="bundled",
                   help="'bundled' (language model), 'bundled-diffusion' (digits diffusion model), a Hugging Face "
                        "id, or a local folder")
    p.add_argument("--kind", default="auto", choices=["auto", *registry.MODEL_KINDS],
                   help="model kind (auto: diffusion for bundled-diffusion and diffusers folders, else language model)")
    p.add_argument("--precisions", default=None,
                   help="comma list of: " + " ".join(registry.PRECISIONS) + " (default: "
                        + "; ".join(f"{k}: {','.join(v)}" for k, v in DEFAULT_PRECISIONS.items()) + ")")
    p.add_argument("--sparsity", default="none", help="comma list of: " + " ".join(registry.SPARSITIES) + " (methods of 2:4 pruning)")
    p.add_argument("--recipes", default=None,
                   help="explicit recipe list instead of the grid, e.g. fp8,int4_awq,bf16+sparsegpt")
    p.add_argument("--kv-cache", default="auto", choices=list(registry.KV_CACHE), help="KV cache precision")
    p.add_argument("--calib-size", type=int, default=16, help="number of calibration sequences")
    p.add_argument("--calib-seq-len", type=int, default=256, help="tokens per calibration sequence")
    p.add_argument("--eval-tokens", type=int, default=4096, help="held-out evaluation tokens")
    p.add_argument("--eval-seq-len", type=int, default=512, help="tokens per evaluation window")
    p.add_argument("--data", default="bundled", help="'bundled', a .txt/.jsonl file, or hf:NAME[:CONFIG]:SPLIT")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--experiment", default=None, help="name to group these results under")
    p.add_argument("--benchmark", action="store_true", help="also measure speed (baseline and recipes in one run)")
    p.add_argument("--backend", default="torch", choices=sorted({n for b in registry.BACKENDS.values() for n in (b.name, *b.aliases)}),
                   help="runtime for --benchmark: " + ", ".join(f"{b.name} ({b.label})" for b in registry.BACKENDS.values()))
    p.add_argument("--isl", type=int, default=128, help="benchmark input length")
    p.add_argument("--osl", type=int, default=64, help="benchmark output length")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=(1, 8), help="benchmark batch sizes, e.g. 1,8")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model repository's own code to run")
    p.add_argument("--force", action="store_true", help="recompute even if the store has the results")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    t = p.add_argument_group("task accuracy (language models, through lm-evaluation-harness: the eval extra)")
    t.add_argument("--tasks", default=None,
                   help="comma list of lm-eval tasks to score the baseline and every recipe on, e.g. "
                        "tlab_doc_continuation (offline, ships with Tradeoff Lab) or mmlu,hellaswag")
    t.add_argument("--task-limit", type=int, default=None, help="questions per task (default: all)")
    t.add_argument("--task-fewshot", type=int, default=0, help="few-shot examples per question")
    t.add_argument("--task-batch-size", type=int, default=8, help="lm-eval batch size")
    g = p.add_argument_group("diffusion models")
    g.add_argument("--labels", default=None, help="class labels to generate, e.g. 0,1,2 (default: 0-9)")
    g.add_argument("--prompts", default=None, help="text prompts, separated by '|' (text-to-image models)")
    g.add_argument("--images-per-condition", type=int, default=4, help="images per label or prompt")
    g.add_argument("--steps", type=int, default=20, help="denoising steps")
    g.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance (default: none)")
    g.add_argument("--resolution", type=int, default=None, help="image size (default: the model's own)")
    g.add_argument("--scheduler", default="ddim", choices=("ddim", "ddpm", "euler", "default"),
                   help="sampler: ddim (default), ddpm, euler, or default (the pipeline's own scheduler)")
    g.add_argument("--calib-images", type=int, default=32, help="images whose denoising steps calibrate")
    p.add_argument("--spec", default=None, metavar="FILE",
                   help="run the sweep saved in this JSON file (from --print-spec) instead of the flags above")
    p.add_argument("--print-spec", action="store_true",
                   help="print the sweep spec as JSON (schema-versioned) and exit without running it")
    p.set_defaults(func=run_sweep_cmd)


def sweep_spec_from_args(args):
    """The SweepSpec the `sweep` flags (or the --spec file) describe; bad values raise TlabError."""
    from engine import pipeline
    from engine.spec import DataSpec, ModelRef, SweepSpec, Workload

    if args.spec:
        return _checked_tasks(SweepSpec.from_json(_read_text(args.spec, "sweep spec")))
    kind = args.kind if args.kind != "auto" else _auto_kind(args.model)
    if args.precisions is None:
        args.precisions = ",".join(DEFAULT_PRECISIONS[kind])

    if args.recipes is not None:
        recipes = [pipeline.parse_recipe(r, args.kv_cache) for r in _csv(args.recipes)]
    else:
        recipes = pipeline.grid(_csv(args.precisions), _csv(args.sparsity), args.kv_cache)
    return _checked_tasks(SweepSpec(
        model=ModelRef(args.model, trust_remote_code=args.trust_remote_code),
        recipes=tuple(recipes),
        data=DataSpec(args.data, args.calib_size, args.calib_seq_len, args.eval_tokens, args.eval_seq_len, args.seed),
        workload=Workload(args.isl, args.osl, tuple(args.batch_sizes)) if args.benchmark else None,
        runtime=args.backend, device=args.device, experiment=args.experiment, kind=kind,
        generation=_generation_from_args(args) if kind == "diffusion" else None,
        tasks=_tasks_from_args(args)))


def _auto_kind(model: str) -> str:
    """diffusion for bundled-diffusion and for a local diffusers pipeline or UNet folder; else a language model."""
    from engine.diffusion.local import looks_like_diffusion
    from engine.spec import BUNDLED_DIFFUSION

    return "diffusion" if model == BUNDLED_DIFFUSION or looks_like_diffusion(model) else "causal_lm"


def _tasks_from_args(args):
    from engine.spec import TaskAccuracySpec

    if args.tasks is None:
        if args.task_limit is not None:
            raise TlabError("--task-limit needs --tasks, e.g. --tasks tlab_doc_continuation --task-limit 40.")
        return None
    return TaskAccuracySpec(tuple(_csv(args.tasks)), args.task_limit, args.task_fewshot, args.task_batch_size)


def _checked_tasks(spec):
    """An unknown task name or a missing lm-eval fails here, before the model loads (exit 2)."""
    if spec.tasks is not None:
        from engine.task_accuracy import check_tasks

        check_tasks(spec.tasks)
    return spec


def _generation_from_args(args):
    from engine.spec import GenerationSpec

    try:
        labels = tuple(int(x) for x in _csv(args.labels)) if args.labels is not None else tuple(range(10))
    except ValueError:
        raise TlabError(f"--labels must be whole numbers separated by commas, got {args.labels!r}.") from None
    prompts = tuple(x.strip() for x in args.prompts.split("|") if x.strip()) if args.prompts else ()
    return GenerationSpec(labels=() if prompts and args.labels is None else labels, prompts=prompts,
                          images_per_condition=args.images_per_condition, steps=args.steps,
                          guidance_scale=args.guidance_scale, resolution=args.resolution,
                          scheduler=args.scheduler, calib_images=args.calib_images, seed=args.seed)


def _read_text(path: str, what: str, limit: int = 1 << 20) -> str:
    """A small text file, or a TlabError that says what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise TlabError(f"Cannot read the {what} file {path}: {exc.strerror or exc}.") from None
    if len(data) > limit:
        raise TlabError(f"The {what} file {path} is over {limit // 1024} KiB; a sweep spec is a few hundred bytes.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise TlabError(f"The {what} file {path} is not UTF-8 text.") from None


def run_sweep_cmd(args) -> int:
    from engine import pipeline
    from engine.store import open_store

    spec = sweep_spec_from_args(args)
    if args.print_spec:
        print(json.dumps(spec.to_dict(), indent=2, sort_keys=True))
        return 0
    store = open_store()
    # modelopt and transformers print to stdout; keep stdout for the table/JSON/CSV alone.
    with _ProgressBar(_sweep_estimate(spec, store)) as bar, contextlib.redirect_stdout(sys.stderr):
        results = pipeline.run_sweep(spec, store, bar.update, force=args.force)
    _print_records(results, args.format)
    print(f"\nStored in {store.shown_url}", file=sys.stderr)
    return 0


def add_results_parser(sub) -> None:
    p = sub.add_parser("results", help="list and export what the store holds")
    p.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.add_argument("--model", default=None)
    p.add_argument("--precision", default=None)
    p.add_argument("--experiment", default=None)
    p.add_argument("--speed-on", default=None, metavar="GPU",
                   help="add each recipe's estimated speedup on this catalog GPU (e.g. h100-sxm) beside its "
                        "measured accuracy")
    p.add_argument("--batch", type=int, default=8, help="with --speed-on: batch size")
    p.add_argument("--isl", type=int, default=1024, help="with --speed-on: input tokens")
    p.add_argument("--osl", type=int, default=128, help="with --speed-on: output tokens")
    p.add_argument("--tp", type=int, default=1, help="with --speed-on: tensor-parallel GPUs")
    p.set_defaults(func=run_results_cmd)


def run_results_cmd(args) -> int:
    import warnings

    from engine.store import open_store

    with warnings.catch_warnings(record=True) as skipped:  # damaged rows: a plain note, not a Python warning
        warnings.simplefilter("always")
        records = open_store().list_results(model=args.model, precision=args.precision, experiment=args.experiment)
    for w in skipped:
        print(f"note: {w.message}", file=sys.stderr)
    if not records and args.format == "table":
        print("The store is empty. Run a sweep first: tlab sweep --model bundled", file=sys.stderr)
        return 0
    columns = TABLE_COLUMNS
    if args.speed_on:
        _add_estimates(records, args)
        columns = [c for c in TABLE_COLUMNS if c != "speedup"]
        columns[-1:-1] = ["est_speedup", "est_speedup_low", "est_speedup_high"]
    _print_records(records, args.format, _with_task_columns(columns, records))
    return 0


def _add_estimates(records: list, args) -> None:
    """Each result's estimated speedup on a catalog GPU, added in memory (never stored) with its
    provenance: "estimated", on which GPU and workload, and how."""
    import pandas as pd

    from engine.perf import catalog
    from engine.perf.on_gpu import GpuWorkload, estimated_speedups

    catalog.gpu(args.speed_on)  # an unknown GPU: "did you mean" before any work
    where = GpuWorkload(args.speed_on, args.batch, args.isl, args.osl, args.tp)
    frame = pd.DataFrame([{"model": r.model, "precision": r.precision, "sparsity": r.sparsity,
                           "kv_cache": r.kv_cache} for r in records])
    est = estimated_speedups(frame, where)
    for r, speed, low, high, note in zip(records, est["y_speedup"], est["y_low"], est["y_high"], est["speed_note"]):
        r.metrics.update(est_speedup=speed, est_speedup_low=low, est_speedup_high=high)
        r.provenance["speed_estimate"] = {"kind": "estimated", "device": where.gpu, "engine": note}


TABLE_COLUMNS = ["model", "precision", "sparsity", "kv_cache", "perplexity", "ppl_increase_pct", "kl_div",
                 "top1_agreement", "speedup", "provenance"]
DIFFUSION_COLUMNS = ["model", "precision", "task_accuracy", "task_accuracy_loss_pts", "psnr_db", "ssim",
                     "speedup", "provenance"]


def _with_task_columns(columns: list[str], records: list) -> list[str]:
    """Each lm-eval task's accuracy and loss in points (± its stderr) before the speed columns."""
    from engine.store.entities import TASK_ACC, TASK_LOSS_PTS, TASK_LOSS_PTS_STDERR, task_names_in

    tasks = task_names_in({name for r in records for name in r.metrics})
    extra = [f"{prefix}{t}" for t in tasks for prefix in (TASK_ACC, TASK_LOSS_PTS, TASK_LOSS_PTS_STDERR)]
    at = next((i for i, c in enumerate(columns) if "speedup" in c), len(columns) - 1)
    return columns[:at] + extra + columns[at:]


def _print_records(records: list, fmt: str, columns: list[str] | None = None) -> None:
    from engine.store import export

    if columns is None:  # a diffusion sweep's table shows image quality, not perplexity
        diffusion = records and all((r.spec or {}).get("kind") == "diffusion" for r in records)
        columns = DIFFUSION_COLUMNS if diffusion else _with_task_columns(TABLE_COLUMNS, records)
    if fmt == "json":
        print(export.to_json(records))
    elif fmt == "csv":
        sys.stdout.write(export.to_csv(records))
    else:
        print(export.to_table(records, columns=columns))
        _print_provenance_notes(records)


def _print_provenance_notes(records: list) -> None:
    """Say under the table where its numbers came from: each distinct source once (accuracy, then
    speed), then what a recipe lacks and why."""
    sources: dict[str, list[str]] = {}
    notes: list[str] = []
    for r in records:
        if r.speed_not_measured:
            notes.append(f"  {r.precision}/{r.sparsity}: speed not measured — {r.speed_not_measured}")
        for part in ("accuracy", "task_accuracy", "speed", "speed_estimate"):
            p = r.part(part)
            if not p:
                continue
            if part == "speed_estimate" and str(p.get("engine", "")).startswith("no estimate"):
                notes.append(f"  {r.precision}/{r.sparsity}: {p['engine']}")
                continue
            line = f"{part.replace('_', ' ')}: {p.get('kind')} on {_device_text(p.get('device'))} — {_how_text(p)}"
            if line not in sources.setdefault(part, []):
                sources[part].append(line)
        scope = (r.part("speed") or {}).get("scope")
        if scope:  # a speedup of part of the recipe (FP8 on a GPU in PyTorch: its linear layers)
            notes.append(f"  {r.precision}/{r.sparsity}: {scope}")
        if r.is_baseline:  # the baseline's speedup against itself says nothing; its noise shows on each recipe
            continue
        for bs, why in r.speedup_refusals.items():
            notes.append(f"  {r.precision}/{r.sparsity} batch {bs}: no speedup reported — {why}")
    order = ("accuracy", "task_accuracy")  # accuracy first, then task accuracy, then speed
    lines = [line for part in sorted(sources, key=lambda k: order.index(k) if k in order else len(order))
             for line in sources[part]] + notes
    if lines:
        print("\nProvenance:\n  " + "\n  ".join(lines))


def _how_text(p: dict) -> str:
    """The engine, and for a PyTorch speed measurement the decode loop and CPU threads."""
    how = str(p.get("engine") or p.get("backend"))
    tasks = p.get("tasks") if isinstance(p.get("tasks"), dict) else {}
    how += "".join(f"; {t.get('task')} v{t.get('task_version')}, {t.get('n_questions')} questions, "
                   f"{t.get('num_fewshot')}-shot" for t in tasks.values() if isinstance(t, dict))
    loop = p.get("decode_loop")
    if loop:
        how += ", " + ("lean decode loop" if loop.startswith("lean") else "transformers forward")
    threads = p.get("device", {}).get("threads") if isinstance(p.get("device"), dict) else None
    return how + (f", {threads} thread(s)" if threads else "")


def _device_text(device) -> str:
    """A provenance device (a string, or a runtime's {name, cores, memory_mb, ...}) in a few words."""
    if not isinstance(device, dict):
        return str(device)
    extra = [f"{device['cores']} cores" if device.get("cores") else "",
             f"{device['memory_mb'] / 1024:.0f} GiB" if device.get("memory_mb") else "",
             f"driver {device['driver']}" if device.get("driver") else ""]
    extra = ", ".join(e for e in extra if e)
    return f"{device.get('kind', '')}: {device.get('name', '?')}" + (f" ({extra})" if extra else "")


class _ProgressBar:
    """Progress on stderr from the engine's (fraction, stage) callbacks, with the time left: a tqdm
    bar on a terminal; plain lines elsewhere (a pipe, a log file, CI), on each new stage and at most
    every PLAIN_EVERY_S seconds otherwise, so a log shows the run without carriage returns."""

    PLAIN_EVERY_S = 5.0

    def __init__(self, estimate_s: float | None = None, stream=None, tty: bool | None = None, clock=None):
        import time

        self.stream = stream if stream is not None else sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)() if tty is None else tty
        self.estimate_s, self.clock = estimate_s, clock or time.monotonic
        self.fraction, self.stage, self.bar, self.last_line = 0.0, None, None, None

    def __enter__(self):
        self.start = self.clock()
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=1000, file=self.stream, bar_format="{l_bar}{bar}| {elapsed}{postfix}")
        return self

    def left(self) -> str:
        from engine.time_estimate import format_remaining, remaining_seconds

        return format_remaining(remaining_seconds(self.fraction, self.clock() - self.start, self.estimate_s))

    def update(self, fraction: float, stage: str) -> None:
        self.fraction = max(self.fraction, min(1.0, max(0.0, float(fraction))))  # a bar never goes back
        if self.bar is not None:
            target = int(self.fraction * 1000)
            if target > self.bar.n:
                self.bar.update(target - self.bar.n)
            self.bar.set_postfix_str(self.left(), refresh=False)
            self.bar.set_description_str(stage[:60])
            return
        now = self.clock()
        if stage != self.stage or self.last_line is None or now - self.last_line >= self.PLAIN_EVERY_S:
            left = self.left()
            print(f"[{self.fraction:4.0%}] {stage}" + (f" ({left})" if left else ""), file=self.stream, flush=True)
            self.last_line = now
        self.stage = stage

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False


def _sweep_estimate(spec, store) -> float | None:
    """The up-front estimate (seconds) of a language-model sweep from this device's earlier timings;
    None for other kinds, whose stages the estimator does not model."""
    from engine.system import describe_device, resolve_device
    from engine.time_estimate import estimate_for_spec

    if spec.kind != "causal_lm":
        return None
    try:
        history = [{"timings": r.timings, "spec": r.spec, "device": r.device} for r in store.list_results()]
    except TlabError:  # an unreadable stored result must not stop a sweep: estimate from defaults
        history = []
    return estimate_for_spec(spec.to_dict(), history, describe_device(resolve_device(spec.device))).seconds


def add_worker_parser(sub) -> None:
    p = sub.add_parser("worker", help="run queued jobs (the app starts one for you)", add_help=False)
    p.set_defaults(func=None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:  # the worker owns its flags
        from engine.jobs.worker import main as worker_main

        return worker_main(argv[1:])
    parser = argparse.ArgumentParser(prog="tlab", description="Tradeoff Lab: speed vs accuracy of optimized models.")
    from engine.app_launcher import add_app_parser, add_version_flag  # `tlab app`, `tlab --version`

    add_version_flag(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    add_sweep_parser(sub)
    add_results_parser(sub)
    _add_estimate_parser(sub)
    add_worker_parser(sub)
    add_app_parser(sub)
    from engine.users_cli import add_users_parser  # `tlab users add|list|remove` (sign-in accounts)
    add_users_parser(sub)
    from engine.training.cli import add_train_parser  # `tlab train` (QAT, sparse fine-tuning)
    add_train_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except TlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _add_estimate_parser(sub) -> None:
    try:
        from engine.perf.cli import add_estimate_parser
    except ImportError as exc:  # the estimator ships with the package; this only guards a broken install
        why = str(exc)  # `exc` is unbound once the except block ends
        p = sub.add_parser("estimate", help="estimate speed on a catalog GPU")
        p.set_defaults(func=lambda a: (print(f"error: the estimator failed to import: {why}", file=sys.stderr), 2)[1])
        return
    add_estimate_parser(sub)


if __name__ == "__main__":
    sys.exit(main())
