"""The training loop: AdamW, linear warm-up then cosine decay, gradient accumulation, checkpoints
and resume. Model-agnostic: it trains whatever modules it is given (modelopt's quantizers stay in
the forward pass with their calibrated amax; sparse modules multiply their mask in on every forward).
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.training import checkpoint

LOSS_LOG = "loss.jsonl"


@dataclass(frozen=True)
class StepInfo:
    step: int  # 1-based: the number of optimizer steps done
    steps: int
    loss: float  # mean training loss over the step's micro-batches
    lr: float
    tokens_seen: int
    elapsed_s: float  # this process's training time so far
    resumed_from: int  # the step this process started at


@dataclass
class TrainOutcome:
    step: int  # steps done (== steps unless stopped)
    tokens_seen: int
    resumed_from: int
    stopped: bool
    losses: list[float] = field(default_factory=list)  # this process's steps only


@dataclass(frozen=True)
class Schedule:
    steps: int
    learning_rate: float
    warmup: int
    grad_accum: int = 1
    checkpoint_every: int = 10


def lr_at(step: int, schedule: Schedule) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warm-up, then cosine decay to 0."""
    peak, warm, total = schedule.learning_rate, schedule.warmup, schedule.steps
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def train(model: Any, batches: Callable[[int, int], Any], schedule: Schedule, run_dir: Path,
          on_step: Callable[[StepInfo], bool | None] | None = None, extra_state: dict | None = None) -> TrainOutcome:
    """Train `model` for `schedule.steps` optimizer steps on `batches(step, micro)`, resuming from the
    newest checkpoint under `run_dir`. `on_step` gets each step's figures; returning False stops the
    run after a checkpoint (the run resumes there next time)."""
    import torch

    run_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=schedule.learning_rate, weight_decay=0.0)
    start, tokens = 0, 0
    found = checkpoint.latest(run_dir)
    if found is not None:
        checkpoint.load_model_state(model, found.folder)
        checkpoint.load_optimizer_state(optimizer, found.folder)
        start, tokens = found.step, found.tokens_seen
    _trim_loss_log(run_dir / LOSS_LOG, start)
    outcome = TrainOutcome(start, tokens, start, stopped=False)
    device = next(model.parameters()).device
    began = time.monotonic()
    model.train()
    try:
        for step in range(start, schedule.steps):
            lr = lr_at(step, schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            total = 0.0
            for micro in range(schedule.grad_accum):
                ids = batches(step, micro).to(device)
                loss = model(input_ids=ids, labels=ids).loss
                (loss / schedule.grad_accum).backward()
                total += loss.item()
                tokens += ids.numel()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            info = StepInfo(done, schedule.steps, total / schedule.grad_accum, lr, tokens,
                            time.monotonic() - began, start)
            outcome.losses.append(info.loss)
            outcome.step, outcome.tokens_seen = done, tokens
            _append(run_dir / LOSS_LOG, info)
            keep_going = on_step(info) if on_step else None
            last = done == schedule.steps
            if last or done % schedule.checkpoint_every == 0 or keep_going is False:
                checkpoint.save(run_dir, model, optimizer, done, tokens, {"loss": info.loss, **(extra_state or {})})
            if keep_going is False and not last:
                outcome.stopped = True
                break
    finally:
        model.eval()
    return outcome


def read_loss_log(run_dir: Path) -> list[dict]:
    """The loss curve so far: one {step, loss, lr, tokens_seen, time} per optimizer step."""
    path = run_dir / LOSS_LOG
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut short by a kill
            continue
    return rows


def _append(path: Path, info: StepInfo) -> None:
    row = {"step": info.step, "loss": info.loss, "lr": info.lr, "tokens_seen": info.tokens_seen, "time": time.time()}
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def _trim_loss_log(path: Path, step: int) -> None:
    """Drop rows past the checkpoint a run resumes from: those steps are trained again."""
    if not path.is_file():
        return
    rows = [r for r in read_loss_log(path.parent) if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def validation_loss(model: Any, windows: Any, batch_size: int = 4) -> float:
    """Mean next-token loss (nats per token) over held-out windows [n, len]: log of the perplexity."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    nll = count = 0.0
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            ids = windows[i: i + batch_size].to(device)
            logits = model(input_ids=ids).logits[:, :-1].float()
            nll += torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                                     reduction="sum").item()
            count += ids[:, 1:].numel()
    return nll / count
