"""Whether the PyTorch runtime can time a diffusion recipe's denoiser on a device, and if not why: one
answer for the speed stage (engine/diffusion/sweep.py) and for what the Experiment page promises."""

from __future__ import annotations

from engine import registry

INT8_ON_CUDA = ("PyTorch has no INT8 convolution kernel on CUDA, so INT8 is not timed with the PyTorch runtime; "
                "time it with TensorRT (--backend tensorrt).")


def why_not_timed(precision: str, device: str) -> str | None:
    """None when `precision`'s denoiser runs on real kernels on `device` ('cpu', 'cuda', 'cuda:N') or is the
    baseline; else the reason, in words. The deployment's own check against the calibrated model can
    still refuse a recipe that passes here."""
    prec = registry.precision(precision)
    if prec.is_baseline:
        return None
    gpu = device.startswith("cuda")
    if precision == "fp8":
        from engine.diffusion.fp8_deploy import fp8_unavailable

        return fp8_unavailable(device) if gpu else "no FP8 kernels on CPU"
    if precision != "int8_sq":
        return f"No real {prec.label} kernels for the diffusion denoiser in PyTorch."
    if gpu:
        return INT8_ON_CUDA
    from engine.diffusion.kernels import int8_unavailable

    return int8_unavailable()
