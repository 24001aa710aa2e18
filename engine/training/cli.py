"""`tlab train`: fine-tune, QAT or sparse fine-tune a model, printing the loss as it trains and the
recovery table at the end (fine-tuned baseline, PTQ or sparsified, after training)."""

import argparse
import json
import sys

from engine import registry
from engine.spec import ModelRef
from engine.training.spec import MODE_DEFAULTS, MODES, TrainingSpec, mode_default

DEFAULTS = TrainingSpec(precision="w4a8_awq")


def add_train_parser(sub) -> None:
    quantized = [p.name for p in registry.precisions_for() if not p.is_baseline]
    sparse = [s.name for s in registry.SPARSITIES.values() if s.modelopt_mode]
    p = sub.add_parser("train", help="QAT or 2:4 sparse fine-tuning (resumes from its last checkpoint)",
                       description="Recover accuracy lost to quantization or sparsity by training. "
                                   "Runs the fine-tuned unquantized baseline first (reused across runs), then "
                                   "PTQ or 2:4 pruning, then training; checkpoints go under $TLAB_HOME/training/.")
    p.add_argument("--mode", choices=list(MODES), default="qat")
    p.add_argument("--precision", help=f"QAT precision: {', '.join(quantized)} (default {DEFAULTS.precision})")
    p.add_argument("--sparsity", help=f"sparse fine-tuning method: {', '.join(sparse)}")
    p.add_argument("--model", default="bundled", help="bundled, a Hugging Face id or a local folder")
    p.add_argument("--data", default=DEFAULTS.data,
                   help="bundled (the shipped corpus's training part), a .txt/.jsonl file, or hf:NAME[:CONFIG]:SPLIT")
    for flag, field, kind in (("--steps", "steps", int), ("--lr", "learning_rate", float),
                              ("--seq-len", "seq_len", int), ("--batch-size", "batch_size", int),
                              ("--grad-accum", "grad_accum", int), ("--seed", "seed", int),
                              ("--warmup", "warmup", int), ("--eval-tokens", "eval_tokens", int),
                              ("--calib-size", "calib_size", int), ("--checkpoint-every", "checkpoint_every", int)):
        by_mode = {m: d[field] for m, d in MODE_DEFAULTS.items() if field in d}
        p.add_argument(flag, dest=field, type=kind, default=None if by_mode else getattr(DEFAULTS, field),
                       help=f"default {getattr(DEFAULTS, field)}"
                            + "".join(f", {v} for {m}" for m, v in by_mode.items())
                            + (" (at most a tenth of --steps unless given)" if field == "warmup" else ""))
    p.add_argument("--task-limit", dest="task_limit", type=int, default=None,
                   help="also score offline task accuracy (tlab_doc_continuation, its first N of 400 questions) of "
                        "the fine-tuned baseline, the PTQ/sparsified model and the trained one (needs lm-eval)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--json", action="store_true", help="print the final figures as JSON")
    p.set_defaults(func=run_train_cmd)


def spec_from_args(args: argparse.Namespace) -> TrainingSpec:
    fields = ("steps", "learning_rate", "seq_len", "batch_size", "grad_accum", "seed", "warmup", "eval_tokens",
              "calib_size", "checkpoint_every", "task_limit")
    precision = args.precision if args.mode == "qat" else None
    if args.mode == "qat" and args.precision is None and args.sparsity is None:
        precision = DEFAULTS.precision
    values = {f: mode_default(args.mode, f) if getattr(args, f) is None and f != "task_limit" else getattr(args, f)
              for f in fields}
    if args.warmup is None:  # not typed: a tenth of the steps at most, so a shorter run needs no --warmup too
        values["warmup"] = min(values["warmup"], max(1, values["steps"] // 10))
    return TrainingSpec(model=ModelRef(args.model, trust_remote_code=args.trust_remote_code), mode=args.mode,
                        precision=precision, sparsity=args.sparsity, data=args.data, device=args.device, **values)


def run_train_cmd(args: argparse.Namespace) -> int:
    from engine.store import open_store
    from engine.training.run import run_training

    spec = spec_from_args(args)  # refuses bad input (TlabError) before the model loads
    quiet = args.json

    def progress(fraction=None, stage=None, log=None):
        if quiet:
            return
        if log:
            print(log, flush=True)
        elif stage and (fraction is None or fraction == 0.0):  # a new stage, not a step
            print(f"-- {stage}", flush=True)

    store = open_store()
    try:
        report = run_training(spec, store, progress)
    except KeyboardInterrupt:
        print("\nInterrupted. Run the same command again to resume from the last checkpoint "
              f"(every {spec.checkpoint_every} steps).", file=sys.stderr)
        return 130
    finally:
        store.close()
    figures = summary(report)
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        print(table(figures))
    return 0


def summary(report) -> dict:
    spec = report.spec
    rows = [("Original model", report.baseline_loss), ("BF16 fine-tuned (baseline)", report.finetuned_loss)]
    if spec.mode != "finetune":
        rows += [(spec.parent_label, report.before_loss), (spec.label, report.after_loss)]
    return {"id": spec.id, "mode": spec.mode, "recipe": spec.label, "rows": rows,
            "gap_closed_pct": report.gap_closed_pct, "steps": report.steps, "tokens_seen": report.tokens_seen,
            "resumed_from": report.resumed_from, "checks": {k: v for k, v in report.checks.items() if k != "masks"},
            "loss_curve": str(report.run_dir / "loss.jsonl"), "task_accuracy": _task_rows(report)}


def _task_rows(report) -> list:
    """(stage, task, accuracy, stderr) of each stage scored, the fine-tuned baseline first."""
    names = {"baseline": "BF16 fine-tuned (baseline)", "before": report.spec.parent_label, "after": report.spec.label}
    if report.spec.mode == "finetune":
        names = {"baseline": names["baseline"]}
    return [(names[stage], task, s["accuracy"], s.get("stderr")) for stage in names
            for task, s in (report.tasks.get(stage) or {}).items()]


def table(figures: dict) -> str:
    width = max(len(name) for name, _ in figures["rows"]) + 2
    lines = ["", f"{'Validation loss (held-out text)':<{width}}  nats/token", "-" * (width + 12)]
    lines += [f"{name:<{width}}  {'-' if v is None else f'{v:.4f}'}" for name, v in figures["rows"]]
    if figures["gap_closed_pct"] is not None:
        lines.append(f"Gap closed by training: {figures['gap_closed_pct']:.1f}% "
                     "(of PTQ/sparse loss minus the fine-tuned baseline's)")
    for stage, task, acc, se in figures.get("task_accuracy") or []:
        lines.append(f"{task} accuracy, {stage}: {100 * acc:.1f}%" + ("" if se is None else f" ± {100 * se:.1f}"))
    lines.append(f"{figures['steps']} steps, {figures['tokens_seen']:,} tokens; loss curve: {figures['loss_curve']}")
    if figures["checks"]:
        lines.append(f"checks: {figures['checks']}")
    return "\n".join(lines)
