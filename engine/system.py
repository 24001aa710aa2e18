"""Facts about this machine: package versions, the CPU (name, usable cores, load, quota), the NVIDIA
GPUs, and which device a run uses.

Cheap to import: torch is imported only inside the functions that need it, and only when no cheaper
source (package metadata, nvidia-smi) answers.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

# --- package versions ---------------------------------------------------------------------------

# What a `measured` provenance records when no specific packages are asked for.
PACKAGES = ("torch", "transformers", "nvidia-modelopt", "tensorrt_llm", "tensorrt", "torchao")


def package_version(*dists: str) -> str | None:
    """Installed version of the first of these distributions found, without importing it (None
    when none is installed). 'tensorrt_llm' also finds 'tensorrt-llm'."""
    for dist in dists:
        for name in dict.fromkeys((dist, dist.replace("_", "-"))):
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    return None


@lru_cache(maxsize=1)
def _default_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        version = package_version(name)
        if version:
            found[name] = version
    return found


def versions(*packages: str) -> dict[str, str]:
    """{distribution: version} of the installed ones among `packages` (absent ones are left out).
    Without names: python and the packages a result's provenance records (PACKAGES)."""
    if not packages:
        return dict(_default_versions())
    found = {}
    for name in packages:
        version = package_version(name)
        if version:
            found[name] = version
    return found


# --- CPU ----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model ('AMD EPYC 7R13 Processor'), or the platform's processor/machine name."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> set[int]:
    """The CPUs this process may run on (its affinity, which containers and taskset restrict); all
    logical CPUs where the system does not report an affinity (macOS)."""
    try:
        cpus = set(psutil.Process().cpu_affinity())
        if cpus:
            return cpus
    except (AttributeError, NotImplementedError, OSError, psutil.Error):
        pass
    return set(range(psutil.cpu_count() or os.cpu_count() or 1))


def _busy_and_total(t: Any) -> tuple[float, float]:
    """(busy, total) seconds of one psutil per-CPU times entry. Guest time is already inside
    user/nice (Linux), so it is not added again; idle and iowait are not busy."""
    total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
    return total - t.idle - getattr(t, "iowait", 0.0), total


def busy_between(before: Sequence[Any], after: Sequence[Any], cpus: set[int]) -> float | None:
    """How many of `cpus` were busy between two `psutil.cpu_times(percpu=True)` samples (0 to
    len(cpus)); None when no time passed or none of `cpus` is in the samples."""
    busy = total = 0.0
    counted = 0
    for i in cpus:
        if i >= len(before) or i >= len(after):
            continue  # an offline CPU: not in the per-CPU list
        b0, t0 = _busy_and_total(before[i])
        b1, t1 = _busy_and_total(after[i])
        busy, total, counted = busy + b1 - b0, total + t1 - t0, counted + 1
    if not counted or total <= 0:
        return None
    return counted * max(0.0, busy) / total


def busy_cores(cpus: set[int] | None = None, sample_s: float = 0.5,
               sample: Callable[[], Sequence[Any]] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> float | None:
    """How many of `cpus` (default: this process's usable CPUs) other programs kept busy over
    `sample_s` (the caller idles meanwhile); None where per-CPU times cannot be read."""
    cpus = usable_cpus() if cpus is None else cpus
    sample = sample or (lambda: psutil.cpu_times(percpu=True))
    try:
        before = sample()
        sleep(sample_s)
        after = sample()
    except (OSError, NotImplementedError, psutil.Error):
        return None
    return busy_between(before, after, cpus)


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


# --- device used by a run -----------------------------------------------------------------------

def resolve_device(device: str = "auto") -> str:
    """'auto' becomes 'cuda' when an NVIDIA GPU is usable, else 'cpu'; a CUDA device that is not
    there is refused now, before a model is loaded for it."""
    if device == "cpu":
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        from engine.errors import UnsupportedOnDevice

        index = int(device.split(":", 1)[1]) if ":" in device else 0
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise UnsupportedOnDevice(
                f"Device {device} was asked for, but PyTorch sees {count or 'no'} CUDA GPU(s) here "
                f"(torch {torch.__version__}). Use --device cpu or auto.")
    return device


def describe_device(device: str) -> str:
    """A one-line description for provenance: 'cpu: <model> (N cores)' or 'cuda: <GPU name>'."""
    if device.startswith("cuda"):
        import torch

        idx = torch.device(device).index or 0
        return f"cuda: {torch.cuda.get_device_name(idx)}"
    return f"cpu: {cpu_name()} ({os.cpu_count()} cores)"


# --- NVIDIA GPU probe ---------------------------------------------------------------------------

def probe_nvidia_gpu(index: int = 0) -> dict[str, Any] | None:
    """Name, memory, compute capability, generation, driver and clocks of NVIDIA GPU `index`, or
    None when there is none. Asks nvidia-smi first (no heavy import); torch.cuda fills what it lacks."""
    info = _nvidia_smi(index)
    if info is None or not info.get("compute_capability"):
        from_torch = _torch_cuda(index)
        if from_torch is None and info is None:
            return None
        info = {**(from_torch or {}), **{k: v for k, v in (info or {}).items() if v is not None}}
    info = {k: v for k, v in info.items() if v is not None}
    info["index"] = index
    cc = info.get("compute_capability")
    if cc:
        from engine.registry import generation_of

        info["generation"] = generation_of(tuple(cc))
    return info


def _torch_cuda(index: int) -> dict[str, Any] | None:
    try:
        import torch

        if not (torch.cuda.is_available() and torch.cuda.device_count() > index):
            return None
        props = torch.cuda.get_device_properties(index)
        return {"name": props.name, "memory_mb": int(props.total_memory // (1024 * 1024)),
                "compute_capability": [props.major, props.minor], "cuda": torch.version.cuda}
    except Exception:  # noqa: BLE001 - a broken CUDA install must read as "no GPU", not crash the app
        return None


_SMI_FIELDS = ("name", "memory.total", "driver_version", "compute_cap",
               "clocks.sm", "clocks.mem", "clocks.max.sm")


def _nvidia_smi(index: int) -> dict[str, Any] | None:
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, f"--id={index}", f"--query-gpu={','.join(_SMI_FIELDS)}",
                              "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return parse_nvidia_smi_csv(out.stdout.strip().splitlines()[0])


def parse_nvidia_smi_csv(line: str) -> dict[str, Any]:
    """One `--query-gpu=name,memory.total,driver_version,compute_cap,clocks.sm,clocks.mem,
    clocks.max.sm --format=csv,noheader,nounits` line -> dict (unreadable fields are None)."""
    parts = [p.strip() for p in line.split(",")]
    parts += [""] * (len(_SMI_FIELDS) - len(parts))

    def num(s: str) -> int | None:
        try:
            return int(float(s))
        except ValueError:
            return None  # "[N/A]" or "[Not Supported]"

    cc = None
    if "." in parts[3]:
        try:
            cc = [int(x) for x in parts[3].split(".")[:2]]
        except ValueError:
            cc = None
    return {"name": parts[0] or None, "memory_mb": num(parts[1]), "driver": parts[2] or None,
            "compute_capability": cc, "sm_clock_mhz": num(parts[4]), "mem_clock_mhz": num(parts[5]),
            "max_sm_clock_mhz": num(parts[6])}


def device_summary(gpu: dict[str, Any] | None) -> dict[str, Any]:
    """The `device` entry of a provenance dict."""
    if gpu is None:
        return {"kind": "cpu", "name": platform.processor() or platform.machine()}
    return {"kind": "cuda", **gpu}


# --- processes -------------------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (zombies count as gone)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:  # a zombie has exited; Linux shows it as state Z
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
