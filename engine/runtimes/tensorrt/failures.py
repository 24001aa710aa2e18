"""Turn a failed trtexec run into a message that says what to do.

The patterns come from real trtexec output (tests/fixtures/tensorrt/README.md names the sources):
an ONNX the parser rejects ends in "Failed to parse onnx file" / "Parsing model failed" and
"&&&& FAILED TensorRT.trtexec"; a build without kernels for a layer says "Could not find any
implementation for node"; a GPU without room says "out of memory" / "could not be allocated".
"""

from __future__ import annotations

import re

from engine.errors import TlabError, UnsupportedOnDevice
from engine.runtimes.tensorrt.report import version_from_banner


class TrtexecRunError(TlabError):
    """trtexec failed for a reason not recognised below; carries its last output lines."""


class OnnxParseError(TlabError):
    """TensorRT's ONNX parser rejected the exported denoiser."""


class GpuOutOfMemory(TlabError):
    """The GPU had no room for the engine build or its execution context."""


_PARSE = [r"Failed to parse onnx file", r"Parsing model failed", r"Invalid Node", r"Assertion failed",
          r"While parsing node number"]
_OOM = [r"\bout of memory\b", r"could not be allocated", r"OutOfMemory", r"CUDA_ERROR_OUT_OF_MEMORY"]
_NO_KERNELS = [r"Could not find any implementation for node", r"no kernel image is available",
               r"[Uu]nsupported (SM|platform|data ?type|precision)", r"does not support (FP8|INT8|BF16|FP16)",
               r"[Ff][Pp]8 .*not supported"]


def _first(patterns: list[str], text: str) -> str | None:
    """The whole line of the first match; for a parser error, with the line naming the bad node."""
    for p in patterns:
        m = re.search(p, text)
        if m:
            start = text.rfind("\n", 0, m.start()) + 1
            end = text.find("\n", m.end())
            return text[start: end if end != -1 else len(text)].strip()
    return None


def _why_node(text: str) -> str | None:
    """The parser's own reason, e.g. 'onnx::QuantizeLinear_429: invalid weights type of Int8'."""
    m = re.search(r"^(?!\[)(.+: (?:invalid|unsupported|Assertion failed).*)$", text, re.M | re.I)
    return m.group(1).strip() if m else None


def _tail(text: str, lines: int = 12) -> str:
    return "\n".join(text.strip().splitlines()[-lines:]) or "(none)"


def classify_failure(returncode: int, output: str, *, precision: str = "", batch_size: int | None = None,
                     gpu_name: str | None = None, tensorrt_version: str | None = None) -> TlabError | None:
    """The error for this run, or None when it passed (exit 0, no "&&&& FAILED" banner)."""
    failed = returncode != 0 or "&&&& FAILED" in output
    if not failed:
        return None
    if tensorrt_version is None:  # the banner names it: "&&&& FAILED TensorRT.trtexec [TensorRT v8403]"
        m = re.search(r"TensorRT\.trtexec \[TensorRT v(\d+)\]", output)
        tensorrt_version = version_from_banner(m.group(1)) if m else None
    trt = f"TensorRT {tensorrt_version}" if tensorrt_version else "TensorRT"
    parse = _first(_PARSE, output)
    if parse:
        why = _why_node(output) or parse
        return OnnxParseError(
            f"{trt} could not read the exported {precision + ' ' if precision else ''}denoiser ONNX: {why}\n"
            "INT8 Q/DQ models need TensorRT 9.2 or newer and FP8 ones 10.2 or newer (modelopt's diffusers "
            "guide); update TensorRT, or export again with the installed nvidia-modelopt and onnx.")
    oom = _first(_OOM, output)
    if oom:
        batch = f" (now {batch_size})" if batch_size else ""
        return GpuOutOfMemory(f"trtexec ran out of GPU memory: {oom}\nUse a smaller batch size{batch} or free the "
                              "GPU from other processes.")
    none = _first(_NO_KERNELS, output)
    if none:
        on = f" on {gpu_name}" if gpu_name else " on this GPU"
        return UnsupportedOnDevice(f"{trt} has no kernels for {precision or 'this engine'}{on}: {none}\n"
                                   "Pick a precision this GPU generation supports (FP8 needs Ada or Hopper) "
                                   "or a newer TensorRT.")
    status = f"exit status {returncode}" if returncode else "'&&&& FAILED'"
    return TrtexecRunError(f"trtexec failed ({status}). Its last output lines:\n{_tail(output)}")
