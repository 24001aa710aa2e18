"""Run an external tool (trtllm-build, trtllm-bench, trtexec) to the end while telling the caller it is
still going: an engine build can take many minutes and prints no fraction we could trust, so progress
repeats its stage with the time spent so far instead of sitting still."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

TICK_S = 5.0


def run_tool(cmd: list[str], timeout_s: float, cwd: Path | None = None,
             tick: Callable[[float], None] | None = None, tick_s: float = TICK_S) -> subprocess.CompletedProcess:
    """subprocess.run(cmd, capture_output=True, text=True) with `tick(elapsed seconds)` every `tick_s` while
    the tool runs. Raises FileNotFoundError and subprocess.TimeoutExpired (the tool killed) like run."""
    t0 = time.monotonic()
    with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        while True:
            elapsed = time.monotonic() - t0
            try:
                out, err = proc.communicate(timeout=max(0.01, min(tick_s, timeout_s - elapsed)))
                return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - t0
                if elapsed >= timeout_s:
                    proc.kill()
                    proc.communicate()
                    raise subprocess.TimeoutExpired(cmd, timeout_s) from None
                if tick:
                    tick(elapsed)


def so_far(stage: str, elapsed_s: float) -> str:
    """'building ... (1 min 20 s so far)'."""
    minutes, seconds = divmod(int(elapsed_s), 60)
    return f"{stage} ({f'{minutes} min ' if minutes else ''}{seconds} s so far)"
