"""trtexec command lines (pure argv builders)."""

import pytest

from engine.errors import TlabError
from engine.runtimes.tensorrt import commands

SHAPES = {"sample": (8, 1, 16, 16), "timestep": (1,), "class_labels": (8,)}


def test_shape_argument():
    assert commands.shape_arg(SHAPES) == "sample:8x1x16x16,timestep:1,class_labels:8"


@pytest.mark.parametrize("precision, flags", [("int8_sq", ["--int8", "--fp16"]), ("fp8", ["--fp8", "--fp16"]),
                                              ("fp16", ["--fp16"]), ("bf16", ["--bf16"])])
def test_build_command_fixes_the_shapes_and_the_precision(precision, flags):
    cmd = commands.build_command(["trtexec"], onnx="/w/int8.onnx", engine="/w/int8_bs8.plan", precision=precision,
                                 shapes=SHAPES, settings=commands.TimingSettings(warmup_ms=300, duration_s=2,
                                                                                 iterations=50, spin_wait=False))
    s = "sample:8x1x16x16,timestep:1,class_labels:8"
    assert cmd == ["trtexec", "--onnx=/w/int8.onnx", "--saveEngine=/w/int8_bs8.plan", *flags,
                   f"--minShapes={s}", f"--optShapes={s}", f"--maxShapes={s}", f"--shapes={s}",
                   "--warmUp=300", "--duration=2", "--iterations=50"]


def test_time_command_reloads_the_engine():
    cmd = commands.time_command(["python", "fake.py"], engine="/w/e.plan", shapes={"sample": (1, 1, 16, 16)})
    assert cmd[:4] == ["python", "fake.py", "--loadEngine=/w/e.plan", "--shapes=sample:1x1x16x16"]
    assert "--useSpinWait" in cmd and not any(a.startswith("--onnx") or a.startswith("--int8") for a in cmd)
    assert commands.shell_line(["trtexec", "--onnx=a b.onnx"]) == "trtexec '--onnx=a b.onnx'"


def test_a_precision_without_engine_settings_is_refused():
    with pytest.raises(TlabError, match="no engine settings for precision 'int4_awq'"):
        commands.build_command(["trtexec"], onnx="m.onnx", engine="e.plan", precision="int4_awq", shapes=SHAPES)


def test_executable_from_path_or_override(monkeypatch, tmp_path):
    monkeypatch.delenv(commands.TRTEXEC_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert commands.trtexec_executable() is None
    exe = tmp_path / "trtexec"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert commands.trtexec_executable() == [str(exe)]
    monkeypatch.setenv(commands.TRTEXEC_ENV, "docker run --gpus all trt trtexec")
    assert commands.trtexec_executable() == ["docker", "run", "--gpus", "all", "trt", "trtexec"]
