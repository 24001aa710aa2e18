"""External tools (engine builds, benchmarks) keep reporting while they run, and a runaway one is stopped."""

import subprocess
import sys

import pytest

from engine.runtimes.tool_run import run_tool, so_far


def test_a_long_tool_ticks_while_it_runs_and_returns_its_output():
    ticks = []
    proc = run_tool([sys.executable, "-c", "import time, sys; time.sleep(1.2); print('built'); "
                     "print('warn', file=sys.stderr); sys.exit(3)"], timeout_s=60, tick=ticks.append, tick_s=0.2)
    assert proc.returncode == 3 and proc.stdout.strip() == "built" and proc.stderr.strip() == "warn"
    assert len(ticks) >= 3 and ticks == sorted(ticks) and 0 < ticks[0] < 1.2


def test_a_runaway_tool_is_killed_at_its_timeout():
    with pytest.raises(subprocess.TimeoutExpired):
        run_tool([sys.executable, "-c", "import time; time.sleep(30)"], timeout_s=0.5, tick_s=0.1)


def test_a_missing_tool_raises_like_subprocess_run():
    with pytest.raises(FileNotFoundError):
        run_tool(["/nonexistent/trtllm-build"], timeout_s=5)


def test_stage_text_names_the_time_so_far():
    assert so_far("building the engine", 80.4) == "building the engine (1 min 20 s so far)"
    assert so_far("building", 7) == "building (7 s so far)"
