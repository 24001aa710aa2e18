"""How many CPU threads a job should use when other programs already keep some cores busy.

torch's intra-op threads meet at the end of every op. When another program holds one of the cores,
the thread on that core waits for the scheduler and every op stalls: on this project's 2-core machine
with one core busy, 2-thread decode runs varied by 1898% and an INT4 AWQ calibration ran past
15 minutes (about 2 minutes on an idle machine). Using only the cores that are free avoids that.
The machine facts (usable CPUs, their load, a container's CPU quota) come from engine.system.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator

from engine import system
from engine.errors import SettingError

ENV_THREADS = "TLAB_THREADS"  # the user's choice wins over the probe
# CPUs a scheduler reserved for this job (the Ray executor sets it to its task's num_cpus): never more
# threads than that, or parts sharing a node take each other's cores and every op stalls. Ray's own way,
# OMP_NUM_THREADS, is not read: torch.set_num_threads overrides it, and a user may have set it for other tools.
ENV_SLOTS = "TLAB_CPU_SLOTS"
OVERSUBSCRIBE = 4  # more threads per usable CPU than this is refused as a mistake


def threads_for(cores: int, busy: float | None, quota: float | None = None) -> int:
    """Threads for the free cores: all of them when nothing else runs, never fewer than one, never
    more than a CPU quota allows."""
    n = cores if busy is None else round(cores - busy)
    if quota is not None:
        n = min(n, math.ceil(quota - 1e-9))
    return max(1, min(cores, n))


def choose_threads(env: dict[str, str] | None = None, probe: Callable[[], float | None] | None = None,
                   cores: int | None = None, quota: Callable[[], float | None] | None = None) -> tuple[int, str]:
    """(threads, why) for a CPU job: $TLAB_THREADS if set, else the cores other programs leave free.
    `probe` (busy cores) and `quota` (a CPU quota) default to engine.system's readings."""
    env = os.environ if env is None else env
    cores = cores or len(system.usable_cpus())
    if env.get(ENV_THREADS, "").strip():
        try:
            wanted = int(env[ENV_THREADS])
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise SettingError(f"${ENV_THREADS} must be a whole number of threads of at least 1, "
                             f"got {env[ENV_THREADS]!r}; unset it to let Tradeoff Lab choose.")
        if wanted > OVERSUBSCRIBE * cores:  # a typo, not a choice: the threads would wait on each other
            raise SettingError(f"${ENV_THREADS}={wanted} is far more than the {cores} CPU(s) this process may "
                               f"use; set it to at most {cores}, or unset it to let Tradeoff Lab choose.")
        return wanted, f"{wanted} thread(s), set by ${ENV_THREADS}"
    slots = _slots(env, cores)
    busy, limit = (probe or system.busy_cores)(), (quota or system.cpu_quota)()
    n = threads_for(cores, busy, limit)
    if slots is not None and slots < n:
        return slots, (f"{slots} thread(s): the Ray task running this job holds {slots} of this machine's "
                       f"{cores} CPUs (its num_cpus)")
    if limit is not None and n == max(1, math.ceil(limit - 1e-9)) and n < cores:
        return n, f"{n} thread(s): this container's CPU quota allows {limit:g} of the {cores} CPUs it sees"
    if busy is None:
        return n, f"{n} thread(s) for {cores} cores (CPU load unknown on this system)"
    if n < cores:
        return n, (f"{n} thread(s) for {cores} cores: other programs keep about {busy:.1f} core(s) busy, and "
                   f"threads that share a core with them stall each other (set ${ENV_THREADS} to override)")
    return n, f"{n} thread(s) for {cores} free cores"


def _slots(env, cores: int) -> int | None:
    raw = env.get(ENV_SLOTS, "").strip()
    if not raw:
        return None
    try:
        return max(1, min(cores, int(float(raw))))
    except (ValueError, OverflowError):
        raise SettingError(f"${ENV_SLOTS} must be a number of CPUs, got {raw!r}; unset it (the Ray executor "
                           "sets it for its tasks).") from None


@contextlib.contextmanager
def job_threads(device: str, sample_s: float = 0.5) -> Iterator[tuple[int, str] | None]:
    """For the duration of a CPU job, torch uses the cores other programs leave free; yields
    (threads, why), or None on a GPU. Measured before the job's own work starts, so only other
    programs count."""
    if not device.startswith("cpu"):
        yield None
        return
    import torch

    before = torch.get_num_threads()
    chosen = choose_threads(probe=lambda: system.busy_cores(sample_s=sample_s))
    torch.set_num_threads(chosen[0])
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)
