"""Where a number came from: device description and library versions for `measured` provenance."""

import platform
from functools import lru_cache
from importlib import metadata

PACKAGES = ("torch", "transformers", "nvidia-modelopt", "tensorrt_llm", "tensorrt", "torchao")


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def resolve_device(device: str = "auto") -> str:
    """'auto' becomes 'cuda' when an NVIDIA GPU is usable, else 'cpu'."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def describe_device(device: str) -> str:
    """A one-line description for provenance: 'cpu: <model> (N cores)' or 'cuda: <GPU name>'."""
    if device.startswith("cuda"):
        import torch

        idx = torch.device(device).index or 0
        return f"cuda: {torch.cuda.get_device_name(idx)}"
    import os

    return f"cpu: {cpu_name()} ({os.cpu_count()} cores)"
