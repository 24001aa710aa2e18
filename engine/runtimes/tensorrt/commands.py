"""Command lines for trtexec (pure: build argv lists, run nothing).

One trtexec run builds an engine from the exported ONNX (`--onnx ... --saveEngine ...`) and times
it; later rounds reload the engine (`--loadEngine`) and only time it, so baseline and recipes can
alternate round by round. Flag names are trtexec's own (TensorRT 8.6 to 10.x: `trtexec --help`).
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TRTEXEC_ENV = "TLAB_TRTEXEC"  # override the trtexec executable (a container wrapper, the tests' stand-in)

# Builder precision flags per registry precision. The Q/DQ nodes of the exported ONNX fix which
# layers run in INT8/FP8 (explicit quantization); the 16-bit flag lets TensorRT run the layers kept
# in high precision in FP16, like the FP16 baseline, so the speedup is the quantized layers' alone.
PRECISION_FLAGS: dict[str, tuple[str, ...]] = {
    "fp16": ("--fp16",),
    "bf16": ("--bf16",),
    "int8_sq": ("--int8", "--fp16"),
    "fp8": ("--fp8", "--fp16"),
}


@dataclass(frozen=True)
class TimingSettings:
    """How long trtexec times one run (its own warm-up and duration), and how many runs."""

    warmup_ms: int = 500  # trtexec --warmUp (its default is 200)
    duration_s: int = 3  # trtexec --duration: at least this long ...
    iterations: int = 20  # ... and at least this many queries (--iterations)
    repeats: int = 3  # runs per engine, alternating recipes; the spread is taken over them
    max_repeats: int = 8  # more runs while the spread stays over 10%
    spin_wait: bool = True  # --useSpinWait: steadier GPU compute times (trtexec's own advice)


def trtexec_executable() -> list[str] | None:
    override = os.environ.get(TRTEXEC_ENV)
    if override:
        return shlex.split(override)
    found = shutil.which("trtexec")
    return [found] if found else None


def shape_arg(shapes: Mapping[str, Sequence[int]]) -> str:
    """{"sample": (8, 1, 16, 16), "timestep": (1,)} -> "sample:8x1x16x16,timestep:1"."""
    return ",".join(f"{name}:{'x'.join(str(int(d)) for d in dims)}" for name, dims in shapes.items())


def precision_flags(precision: str) -> list[str]:
    from engine.errors import UnsupportedOnDevice

    if precision not in PRECISION_FLAGS:
        raise UnsupportedOnDevice(f"The TensorRT backend has no engine settings for precision {precision!r}; "
                                  f"it builds {', '.join(PRECISION_FLAGS)}.")
    return list(PRECISION_FLAGS[precision])


def _timing(settings: TimingSettings) -> list[str]:
    cmd = [f"--warmUp={settings.warmup_ms}", f"--duration={settings.duration_s}",
           f"--iterations={settings.iterations}"]
    return cmd + (["--useSpinWait"] if settings.spin_wait else [])


def build_command(exe: Sequence[str], *, onnx: str | Path, engine: str | Path, precision: str,
                  shapes: Mapping[str, Sequence[int]], settings: TimingSettings = TimingSettings()) -> list[str]:
    """Build an engine for exactly these input shapes (min = opt = max) and time it once."""
    s = shape_arg(shapes)
    return [*exe, f"--onnx={onnx}", f"--saveEngine={engine}", *precision_flags(precision),
            f"--minShapes={s}", f"--optShapes={s}", f"--maxShapes={s}", f"--shapes={s}", *_timing(settings)]


def time_command(exe: Sequence[str], *, engine: str | Path, shapes: Mapping[str, Sequence[int]],
                 settings: TimingSettings = TimingSettings()) -> list[str]:
    """Time a built engine again (no build)."""
    return [*exe, f"--loadEngine={engine}", f"--shapes={shape_arg(shapes)}", *_timing(settings)]


def shell_line(cmd: Sequence[str]) -> str:
    """The exact command as one copy-pasteable line (stored in provenance)."""
    return shlex.join(list(cmd))
