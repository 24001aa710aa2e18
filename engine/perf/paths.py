"""Where the shipped data files and the per-user cache live."""

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def asset(name: str) -> Path:
    return ASSETS / name


def tlab_home() -> Path:
    # Same convention as the rest of the tool: everything written goes under $TLAB_HOME.
    return Path(os.environ.get("TLAB_HOME") or Path.home() / ".tlab")
