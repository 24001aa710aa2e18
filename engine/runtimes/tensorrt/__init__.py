"""TensorRT runtime backend for diffusion denoisers: export the (modelopt-quantized) UNet to ONNX,
build an engine with trtexec, time it with trtexec, read its report.

Modules: availability (can it run here, and why not), onnx_export (Q/DQ ONNX, runs on CPU),
commands (trtexec argv), report (trtexec's performance summary -> Measurement), failures (error
messages), runtime (the `Runtime` implementation). None imports tensorrt.
"""

from engine.runtimes.tensorrt.runtime import TensorRTRuntime

__all__ = ["TensorRTRuntime"]
