"""The CPU thread policy: threads for the cores other programs leave free (the readings come from
engine.system, tested in test_system.py), a CPU quota's cap, and the user's override."""

import pytest

from engine import cpu_threads as ct
from engine import system


@pytest.mark.parametrize("cores,busy,want", [
    (2, 0.0, 2), (2, 0.3, 2), (2, 1.0, 1), (2, 2.0, 1), (2, None, 2), (16, 3.2, 13), (1, 0.9, 1),
])
def test_threads_for_the_free_cores(cores, busy, want):
    assert ct.threads_for(cores, busy) == want


def test_choose_threads_says_why_it_uses_fewer():
    n, why = ct.choose_threads(env={}, probe=lambda: 1.0, cores=2, quota=lambda: None)
    assert n == 1 and "about 1.0 core(s) busy" in why and ct.ENV_THREADS in why
    n, why = ct.choose_threads(env={}, probe=lambda: 0.1, cores=2, quota=lambda: None)
    assert n == 2 and "free cores" in why


def test_a_cpu_quota_caps_the_threads():
    """docker --cpus=1.5 on a 64-CPU host: torch would start 64 threads; the job uses 2."""
    n, why = ct.choose_threads(env={}, probe=lambda: 3.0, cores=64, quota=lambda: 1.5)
    assert n == 2 and "quota allows 1.5 of the 64 CPUs" in why
    assert ct.threads_for(64, None, 8.0) == 8 and ct.threads_for(2, 0.0, 16.0) == 2


@pytest.mark.bad_input
def test_user_setting_wins_and_bad_values_say_what_to_do():
    assert ct.choose_threads(env={ct.ENV_THREADS: "3"}, probe=lambda: 2.0, cores=2)[0] == 3
    with pytest.raises(ValueError, match="whole number.*unset it"):
        ct.choose_threads(env={ct.ENV_THREADS: "many"}, probe=lambda: 0.0, cores=2)
    with pytest.raises(ValueError, match="at least 1"):
        ct.choose_threads(env={ct.ENV_THREADS: "0"}, probe=lambda: 0.0, cores=2)


def test_job_threads_uses_the_free_cores_and_restores(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv(ct.ENV_THREADS, raising=False)
    monkeypatch.setattr(system, "usable_cpus", lambda: {0, 1})
    monkeypatch.setattr(system, "busy_cores", lambda sample_s=1.0: 1.0)  # a reading: one core busy elsewhere
    monkeypatch.setattr(system, "cpu_quota", lambda: None)
    with ct.job_threads("cpu") as (n, why):
        assert n == 1 and torch.get_num_threads() == 1
        assert "busy" in why
    assert torch.get_num_threads() == before
    with ct.job_threads("cuda:0") as chosen:
        assert chosen is None and torch.get_num_threads() == before


def test_choose_threads_reads_this_machine_through_engine_system(monkeypatch):
    monkeypatch.setattr(system, "usable_cpus", lambda: set(range(8)))
    monkeypatch.setattr(system, "busy_cores", lambda: 2.6)
    monkeypatch.setattr(system, "cpu_quota", lambda: None)
    assert ct.choose_threads(env={})[0] == 5
    monkeypatch.setattr(system, "cpu_quota", lambda: 3.0)
    n, why = ct.choose_threads(env={})
    assert n == 3 and "quota allows 3 of the 8 CPUs" in why


def test_choose_threads_on_this_machine_uses_its_real_readings(monkeypatch):
    real = system.busy_cores
    monkeypatch.setattr(system, "busy_cores", lambda: real(sample_s=0.1))  # the real sampler, shorter
    cores = len(system.usable_cpus())
    n, why = ct.choose_threads(env={})
    assert 1 <= n <= cores and "thread(s)" in why and "unknown" not in why  # psutil reads the load here
