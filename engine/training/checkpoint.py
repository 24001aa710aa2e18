"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder `step-NNNNNN/` holding `model.safetensors` (every parameter and buffer:
weights, modelopt quantizer amax / pre-quant scales, sparsity masks), `optimizer.safetensors`
(AdamW moments) and `state.json` (step, tokens seen, loss). `latest.json` names the newest complete
one and is replaced atomically after it is written, so a run killed mid-save resumes from the one
before.
"""

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import TlabError

FORMAT = 1
LATEST = "latest.json"


@dataclass
class Checkpoint:
    folder: Path
    step: int
    tokens_seen: int
    state: dict


def save(run_dir: Path, model: Any, optimizer: Any | None, step: int, tokens_seen: int, extra: dict) -> Path:
    from safetensors.torch import save_file, save_model

    folder = run_dir / f"step-{step:06d}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    save_model(model, str(folder / "model.safetensors"))  # drops tied duplicates (lm_head = embeddings)
    if optimizer is not None:
        save_file(_optimizer_tensors(optimizer), str(folder / "optimizer.safetensors"))
    state = {"format": FORMAT, "step": step, "tokens_seen": tokens_seen, **extra}
    (folder / "state.json").write_text(json.dumps(state, indent=1))
    tmp = run_dir / (LATEST + ".tmp")
    tmp.write_text(json.dumps({"folder": folder.name, "step": step}))
    os.replace(tmp, run_dir / LATEST)
    for old in run_dir.glob("step-*"):  # keep only the newest (a checkpoint is 3x the model's size)
        if old.is_dir() and old != folder:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def latest(run_dir: Path) -> Checkpoint | None:
    """The newest complete checkpoint under `run_dir`, or None."""
    pointer = run_dir / LATEST
    if not pointer.is_file():
        return None
    try:
        folder = run_dir / json.loads(pointer.read_text())["folder"]
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise TlabError(f"The training checkpoint in {run_dir} is unreadable ({exc}); delete that folder "
                        "to start the run again from step 0.") from None
    if state.get("format") != FORMAT:
        raise TlabError(f"The checkpoint in {folder} has format {state.get('format')}, not {FORMAT}; "
                        "delete it to start again.")
    return Checkpoint(folder, int(state["step"]), int(state["tokens_seen"]), state)


def load_model_state(model: Any, folder: Path) -> None:
    """Load weights, quantizer state and masks into a model built the same way (strict)."""
    from safetensors.torch import load_model

    try:
        load_model(model, str(folder / "model.safetensors"), strict=True)
    except RuntimeError as exc:
        raise TlabError(f"The checkpoint in {folder} does not fit this model ({str(exc)[:300]}); it was "
                        "written by a different model or recipe. Delete the folder to start again.") from None


def load_optimizer_state(optimizer: Any, folder: Path) -> bool:
    """Restore AdamW moments where the checkpoint has them; False when it has none."""
    from safetensors.torch import load_file

    path = folder / "optimizer.safetensors"
    if not path.is_file():
        return False
    tensors = load_file(str(path))
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    current = optimizer.state_dict()
    optimizer.load_state_dict({"state": state, "param_groups": current["param_groups"]})
    return True


def _optimizer_tensors(optimizer: Any) -> dict:
    out = {}
    for index, entry in optimizer.state_dict()["state"].items():
        for name, value in entry.items():
            out[f"{index}.{name}"] = value.detach().contiguous().clone()
    return out
