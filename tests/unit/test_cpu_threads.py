"""The CPU thread policy: free cores from /proc/stat samples, and the user's override."""

import pytest

from engine import cpu_threads as ct

# Two real-format /proc/stat snapshots of a 2-CPU machine, 100 ticks apart per CPU:
# cpu0 fully busy (a program spinning), cpu1 idle.
STAT_0 = """cpu  200 0 100 1000 0 0 0 0 0 0
cpu0 150 0 50 400 0 0 0 0 0 0
cpu1 50 0 50 600 0 0 0 0 0 0
intr 123
"""
STAT_1 = """cpu  300 0 100 1100 0 0 0 0 0 0
cpu0 240 0 60 400 0 0 0 0 0 0
cpu1 50 0 50 700 0 0 0 0 0 0
intr 124
"""


def test_parse_counts_only_the_given_cpus_and_not_idle_or_iowait():
    assert ct.parse_proc_stat(STAT_0, {0, 1}) == (300, 1300)
    assert ct.parse_proc_stat(STAT_0, {1}) == (100, 700)
    text = "cpu3 10 0 5 100 40 1 1 2 7 0\n"  # guest (7) is already inside user: not added again
    assert ct.parse_proc_stat(text, {3}) == (19, 159)


def test_busy_cores_from_two_samples():
    snaps = iter([STAT_0, STAT_1])
    busy = ct.busy_cores({0, 1}, read=lambda: next(snaps), sleep=lambda s: None)
    assert busy == pytest.approx(1.0)
    snaps = iter([STAT_0, STAT_1])
    assert ct.busy_cores({1}, read=lambda: next(snaps), sleep=lambda s: None) == pytest.approx(0.0)


def test_busy_cores_unknown_without_proc_stat():
    def unreadable():
        raise OSError("no /proc here")

    assert ct.busy_cores({0}, read=unreadable, sleep=lambda s: None) is None


def test_busy_cores_on_this_machine_is_within_its_cores():
    busy = ct.busy_cores(sample_s=0.1)
    cores = len(ct.usable_cpus())
    assert busy is None or 0.0 <= busy <= cores + 1e-6


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


@pytest.mark.parametrize("v2,v1,want", [
    ("max 100000\n", None, None), ("200000 100000\n", None, 2.0), ("150000 100000", None, 1.5),
    (None, ("-1", "100000"), None), (None, ("400000", "100000"), 4.0), ("garbage", None, None), (None, None, None),
])
def test_cgroup_cpu_quota(v2, v1, want):
    got = ct.parse_cpu_quota(v2, *(v1 or (None, None)))
    assert got == want


def test_a_cpu_quota_caps_the_threads():
    """docker --cpus=1.5 on a 64-CPU host: torch would start 64 threads; the job uses 2."""
    n, why = ct.choose_threads(env={}, probe=lambda: 3.0, cores=64, quota=lambda: 1.5)
    assert n == 2 and "quota allows 1.5 of the 64 CPUs" in why
    assert ct.threads_for(64, None, 8.0) == 8 and ct.threads_for(2, 0.0, 16.0) == 2
    assert ct.cpu_quota() is None or ct.cpu_quota() > 0  # this machine: read for real


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
    monkeypatch.setattr(ct, "usable_cpus", lambda: {0, 1})
    monkeypatch.setattr(ct, "busy_cores", lambda sample_s=1.0: 1.0)  # a reading: one core busy elsewhere
    with ct.job_threads("cpu") as (n, why):
        assert n == 1 and torch.get_num_threads() == 1
        assert "busy" in why
    assert torch.get_num_threads() == before
    with ct.job_threads("cuda:0") as chosen:
        assert chosen is None and torch.get_num_threads() == before
