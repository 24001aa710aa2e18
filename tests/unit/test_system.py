"""engine.system: package versions, CPU facts (name, usable cores, load, quota), the NVIDIA GPU probe."""

import os
import platform
import subprocess
import sys
import time
from importlib import metadata

import psutil
import pytest

from engine import system

# --- versions -----------------------------------------------------------------------------------


def test_package_version_reads_metadata_and_says_none_when_absent():
    torch_version = metadata.version("torch")
    assert system.package_version("torch") == torch_version
    assert system.package_version("no-such-dist-tlab") is None
    assert system.package_version("no-such-dist-tlab", "torch") == torch_version  # the first one found
    assert system.package_version("nvidia_modelopt") == metadata.version("nvidia-modelopt")  # '_' or '-'


def test_versions_for_named_packages_and_the_default_report():
    assert system.versions("torch", "no-such-dist-tlab") == {"torch": metadata.version("torch")}
    report = system.versions()
    assert report["python"] == platform.python_version() and report["torch"] == metadata.version("torch")
    assert set(report) <= {"python", *system.PACKAGES}
    report["torch"] = "changed"
    assert system.versions()["torch"] == metadata.version("torch")  # callers get a copy


def test_importing_engine_system_does_not_import_torch():
    code = "import sys, engine.system; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- CPU ----------------------------------------------------------------------------------------


def test_cpu_name_and_usable_cpus_of_this_machine():
    name = system.cpu_name()
    assert isinstance(name, str) and name
    if os.path.exists("/proc/cpuinfo") and "model name" in open("/proc/cpuinfo").read():
        assert name in open("/proc/cpuinfo").read()
    cpus = system.usable_cpus()
    assert cpus and cpus <= set(range(psutil.cpu_count() or 1024))
    if hasattr(os, "sched_getaffinity"):
        assert cpus == set(os.sched_getaffinity(0))


def _times(**seconds):
    """A real psutil per-CPU times entry with the given fields (the rest zero)."""
    t = psutil.cpu_times()
    return t._replace(**{**{f: 0.0 for f in t._fields}, **seconds})


def test_busy_between_counts_only_the_given_cpus_and_not_idle_or_iowait():
    has_iowait = "iowait" in psutil.cpu_times()._fields
    before = [_times(user=150, system=50, idle=400), _times(user=50, system=50, idle=600)]
    # cpu0 spun for 100 s; cpu1 idled for 100 s (half of it waiting on disk, which is not busy either)
    after = [_times(user=240, system=60, idle=400),
             _times(user=50, system=50, idle=650, iowait=50) if has_iowait else _times(user=50, system=50, idle=700)]
    assert system.busy_between(before, after, {0, 1}) == pytest.approx(1.0)
    assert system.busy_between(before, after, {0}) == pytest.approx(1.0)
    assert system.busy_between(before, after, {1}) == pytest.approx(0.0)
    assert system.busy_between(before, before, {0, 1}) is None  # no time passed
    assert system.busy_between(before, after, {7}) is None  # not in the samples


@pytest.mark.skipif("guest" not in psutil.cpu_times()._fields, reason="guest time is a Linux field")
def test_busy_between_does_not_count_guest_time_twice():
    before = [_times(user=0, idle=0)]
    after = [_times(user=10, idle=10, guest=10)]  # guest is already inside user: half busy, not 2/3
    assert system.busy_between(before, after, {0}) == pytest.approx(0.5)


def test_busy_cores_samples_twice_and_is_none_when_unreadable():
    samples = iter([[_times(user=0, idle=0)] * 2, [_times(user=30, idle=70), _times(user=100, idle=0)]])
    slept = []
    busy = system.busy_cores({0, 1}, sample_s=0.25, sample=lambda: next(samples), sleep=slept.append)
    assert busy == pytest.approx(1.3) and slept == [0.25]

    def unreadable():
        raise OSError("no per-CPU times here")

    assert system.busy_cores({0}, sample=unreadable, sleep=lambda s: None) is None


def test_busy_cores_on_this_machine_is_within_its_cores():
    busy = system.busy_cores(sample_s=0.1)
    assert busy is not None and 0.0 <= busy <= len(system.usable_cpus()) + 1e-6


@pytest.mark.skipif(not hasattr(psutil.Process(), "cpu_affinity"), reason="needs CPU affinity (Linux, Windows)")
def test_busy_cores_sees_a_program_spinning_on_one_cpu():
    cpu = min(system.usable_cpus())
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        psutil.Process(spinner.pid).cpu_affinity([cpu])
        time.sleep(0.2)  # let it start spinning
        busy = system.busy_cores({cpu}, sample_s=0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy > 0.8


@pytest.mark.parametrize("v2,v1,want", [
    ("max 100000\n", None, None), ("200000 100000\n", None, 2.0), ("150000 100000", None, 1.5),
    (None, ("-1", "100000"), None), (None, ("400000", "100000"), 4.0), ("garbage", None, None), (None, None, None),
])
def test_cgroup_cpu_quota(v2, v1, want):
    assert system.parse_cpu_quota(v2, *(v1 or (None, None))) == want


def test_cpu_quota_reads_the_cgroup_files(monkeypatch, tmp_path):
    assert system.cpu_quota() is None or system.cpu_quota() > 0  # this machine: read for real
    monkeypatch.setattr(system, "CGROUP_V2_MAX", tmp_path / "absent")
    (tmp_path / "quota").write_text("250000\n")
    (tmp_path / "period").write_text("100000\n")
    monkeypatch.setattr(system, "CGROUP_V1_QUOTA", tmp_path / "quota")
    monkeypatch.setattr(system, "CGROUP_V1_PERIOD", tmp_path / "period")
    assert system.cpu_quota() == 2.5
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    monkeypatch.setattr(system, "CGROUP_V2_MAX", tmp_path / "cpu.max")
    assert system.cpu_quota() == 0.5  # v2 wins when present


# --- device -------------------------------------------------------------------------------------


def test_resolve_and_describe_the_cpu():
    import torch

    assert system.resolve_device("cpu") == "cpu"
    assert system.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert system.describe_device("cpu") == f"cpu: {system.cpu_name()} ({os.cpu_count()} cores)"


# --- NVIDIA GPU probe ---------------------------------------------------------------------------

A10G = "NVIDIA A10G, 23028, 535.104.05, 8.6, [N/A], [N/A], 1710"  # nvidia-smi's real answer on an A10G


def test_parse_nvidia_smi_csv_handles_unreadable_fields():
    d = system.parse_nvidia_smi_csv(A10G)
    assert d["compute_capability"] == [8, 6] and d["sm_clock_mhz"] is None and d["max_sm_clock_mhz"] == 1710
    assert d["name"] == "NVIDIA A10G" and d["memory_mb"] == 23028 and d["driver"] == "535.104.05"
    short = system.parse_nvidia_smi_csv("Tesla V100, 16160, 470.1, [N/A]")  # an old driver: no compute_cap
    assert short["compute_capability"] is None and short["max_sm_clock_mhz"] is None


def test_probe_merges_nvidia_smi_and_torch(monkeypatch):
    monkeypatch.setattr(system, "_nvidia_smi", lambda i: None)
    monkeypatch.setattr(system, "_torch_cuda", lambda i: None)
    assert system.probe_nvidia_gpu(0) is None  # no GPU

    monkeypatch.setattr(system, "_nvidia_smi", lambda i: system.parse_nvidia_smi_csv(A10G))
    gpu = system.probe_nvidia_gpu(0)
    assert gpu["generation"] == "ampere" and gpu["index"] == 0 and "sm_clock_mhz" not in gpu  # N/A dropped

    # nvidia-smi without compute_cap: torch fills it in, nvidia-smi's other fields win
    monkeypatch.setattr(system, "_nvidia_smi", lambda i: system.parse_nvidia_smi_csv("Tesla V100, 16160, 470.1"))
    monkeypatch.setattr(system, "_torch_cuda", lambda i: {"name": "torch name", "compute_capability": [7, 0],
                                                          "cuda": "12.1"})
    gpu = system.probe_nvidia_gpu(1)
    assert gpu["name"] == "Tesla V100" and gpu["compute_capability"] == [7, 0] and gpu["cuda"] == "12.1"
    assert gpu["generation"] == "volta" and gpu["index"] == 1


def test_device_summary():
    assert system.device_summary(None)["kind"] == "cpu"
    assert system.device_summary({"name": "NVIDIA A10G"}) == {"kind": "cuda", "name": "NVIDIA A10G"}
