"""engine.time_estimate and engine.devices."""

import pytest

from engine import devices
from engine.time_estimate import (
    DEFAULT_BASIS,
    estimate_sweep,
    format_duration,
    same_device,
)
from tests.app.results_data import make_record

DATA = {"calib_size": 4, "calib_seq_len": 64, "eval_tokens": 1024}


def test_estimate_without_history_says_it_is_a_rough_default():
    est = estimate_sweep(2, DATA, None)
    assert not est.from_history and est.basis == DEFAULT_BASIS and est.seconds > 0


def test_estimate_from_history_scales_with_the_work():
    history = [make_record("a", "fp8", i) for i in range(3)]  # timings: calibrate 3 s for (4+i)*64 tokens ...
    small = estimate_sweep(1, DATA, None, history, "cpu")
    big = estimate_sweep(1, {**DATA, "calib_size": 40}, None, history, "cpu")
    more = estimate_sweep(3, DATA, None, history, "cpu")
    assert small.from_history and "3 earlier result(s) on cpu" in small.basis
    assert big.seconds > small.seconds and more.seconds > small.seconds
    with_speed = estimate_sweep(1, DATA, {"batch_sizes": [1, 8], "output_len": 16}, history, "cpu")
    assert with_speed.seconds > small.seconds


def test_same_device_and_durations():
    assert same_device("cpu", "cpu") and same_device("CPU (x86_64)", "cpu")
    assert same_device("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3") and not same_device("cpu", "NVIDIA H100")
    assert not same_device(None, "cpu")
    assert format_duration(42) == "about 40 s" and format_duration(600) == "about 10 min"


# A GPU cannot be probed here; this is nvidia-smi's real answer on an A10G (as in test_system).
A10G = "NVIDIA A10G, 23028, 535.104.05, 8.6, [N/A], [N/A], 1710"


def _probe_one_a10g(index):
    from engine.registry import generation_of
    from engine.system import parse_nvidia_smi_csv

    if index > 0:
        return None
    info = parse_nvidia_smi_csv(A10G)
    return {**info, "index": 0, "generation": generation_of(tuple(info["compute_capability"]))}


def test_gpu_machine_lists_its_gpu_and_enables_nvfp4_calibration():
    gpus = devices.detect_gpus(probe=_probe_one_a10g)
    assert len(gpus) == 1 and devices.gpu_label(gpus[0]) == "GPU 0: NVIDIA A10G, 22 GiB, Ampere sm86"
    assert all(c.runnable for c in devices.precision_choices(gpus))
    checks = {c.name: c for c in devices.engine_checks(gpus)}
    assert set(checks) == {"modelopt", "TensorRT-LLM", "TensorRT", "CUDA"}
    assert all(c.reason for c in checks.values())


def test_cpu_machine_disables_nvfp4_with_a_reason():
    choices = {c.name: c for c in devices.precision_choices([])}
    assert not choices["nvfp4"].runnable and "NVIDIA GPU" in choices["nvfp4"].reason
    assert all(c.runnable for n, c in choices.items() if n != "nvfp4")
    checks = {c.name: c for c in devices.engine_checks([])}
    assert not checks["CUDA"].ok and "no NVIDIA GPU" in checks["CUDA"].reason
    assert not checks["TensorRT"].ok or checks["TensorRT"].version


@pytest.mark.skipif(bool(devices.detect_gpus()), reason="checks the CPU-only answer")
def test_speed_availability_on_cpu_names_the_missing_kernels():
    ok, why = devices.speed_availability("fp8", "pytorch")
    assert not ok and "FP8" in why
    ok, why = devices.speed_availability("bf16", "tensorrt_llm")
    assert not ok and "TensorRT-LLM" in why
