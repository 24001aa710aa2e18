"""How many CPU threads a job should use when other programs already keep some cores busy.

torch's intra-op threads meet at the end of every op. When another program holds one of the cores,
the thread on that core waits for the scheduler and every op stalls: on this project's 2-core machine
with one core busy, 2-thread decode runs varied by 1898% and an INT4 AWQ calibration ran past
15 minutes (about 2 minutes on an idle machine). Using only the cores that are free avoids that.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from engine.errors import SettingError

PROC_STAT = Path("/proc/stat")
ENV_THREADS = "TLAB_THREADS"  # the user's choice wins over the probe


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity, which containers and taskset restrict)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def parse_proc_stat(text: str, cpus: set[int]) -> tuple[int, int]:
    """(busy, total) clock ticks summed over `cpus`, from the per-CPU lines of /proc/stat.

    Columns: user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is
    already inside user/nice, so only the first eight count. Idle and iowait are not busy.
    """
    busy = total = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(v) for v in rest.split()[:8]]
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return busy, total


def busy_cores(cpus: set[int] | None = None, sample_s: float = 0.5,
               read: Callable[[], str] | None = None, sleep: Callable[[float], None] = time.sleep) -> float | None:
    """How many of `cpus` other programs kept busy over `sample_s` (this process idles meanwhile);
    None where /proc/stat cannot be read (not Linux)."""
    cpus = usable_cpus() if cpus is None else cpus
    read = read or PROC_STAT.read_text
    try:
        b0, t0 = parse_proc_stat(read(), cpus)
        sleep(sample_s)
        b1, t1 = parse_proc_stat(read(), cpus)
    except (OSError, ValueError):
        return None
    if t1 <= t0:
        return None
    return len(cpus) * (b1 - b0) / (t1 - t0)


CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")


def parse_cpu_quota(v2: str | None = None, v1_quota: str | None = None, v1_period: str | None = None) -> float | None:
    """CPUs a cgroup CPU quota allows (cgroup v2 `cpu.max` "QUOTA PERIOD", or v1 cfs quota and period);
    None when unlimited ("max", -1) or unknown."""
    try:
        if v2 is not None:
            quota, _, period = v2.strip().partition(" ")
            return None if quota == "max" else int(quota) / int(period or 100000)
        if v1_quota is not None and v1_period is not None:
            quota = int(v1_quota)
            return None if quota <= 0 else quota / int(v1_period)
    except ValueError:
        return None
    return None


def cpu_quota() -> float | None:
    """CPUs this container's CPU quota allows (docker --cpus, Kubernetes limits), if any. torch sizes
    its thread pool from the CPUs it can see, which a quota does not shrink."""
    def read(path: Path) -> str | None:
        try:
            return path.read_text()
        except OSError:
            return None

    v2 = read(CGROUP_V2_MAX)
    return parse_cpu_quota(v2) if v2 is not None else parse_cpu_quota(None, read(CGROUP_V1_QUOTA), read(CGROUP_V1_PERIOD))


def threads_for(cores: int, busy: float | None, quota: float | None = None) -> int:
    """Threads for the free cores: all of them when nothing else runs, never fewer than one, never
    more than a CPU quota allows."""
    n = cores if busy is None else round(cores - busy)
    if quota is not None:
        n = min(n, math.ceil(quota - 1e-9))
    return max(1, min(cores, n))


def choose_threads(env: dict[str, str] | None = None, probe: Callable[[], float | None] = busy_cores,
                   cores: int | None = None, quota: Callable[[], float | None] = cpu_quota) -> tuple[int, str]:
    """(threads, why) for a CPU job: $TLAB_THREADS if set, else the cores other programs leave free."""
    env = os.environ if env is None else env
    cores = cores or len(usable_cpus())
    if env.get(ENV_THREADS, "").strip():
        try:
            wanted = int(env[ENV_THREADS])
        except ValueError:
            wanted = 0
        if wanted < 1:
            raise SettingError(f"${ENV_THREADS} must be a whole number of threads of at least 1, "
                             f"got {env[ENV_THREADS]!r}; unset it to let Tradeoff Lab choose.")
        return wanted, f"{wanted} thread(s), set by ${ENV_THREADS}"
    busy, limit = probe(), quota()
    n = threads_for(cores, busy, limit)
    if limit is not None and n == max(1, math.ceil(limit - 1e-9)) and n < cores:
        return n, f"{n} thread(s): this container's CPU quota allows {limit:g} of the {cores} CPUs it sees"
    if busy is None:
        return n, f"{n} thread(s) for {cores} cores (CPU load unknown on this system)"
    if n < cores:
        return n, (f"{n} thread(s) for {cores} cores: other programs keep about {busy:.1f} core(s) busy, and "
                   f"threads that share a core with them stall each other (set ${ENV_THREADS} to override)")
    return n, f"{n} thread(s) for {cores} free cores"


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
    chosen = choose_threads(probe=lambda: busy_cores(sample_s=sample_s))
    torch.set_num_threads(chosen[0])
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)
