"""What a web user (or a job row, which a web user can write) may make the server read or run.

The command line stays free: whoever runs `tlab sweep` already has the machine. The app and the job
queue are untrusted input, so they reach only what the administrator allows:
- local model folders and data files under the allowed folders: `TLAB_WEB_ALLOWED_DIRS` (paths
  separated by the OS path separator), by default the data folder `$TLAB_HOME` (uploads land there);
- a model's own Python code (`trust_remote_code`) only when `TLAB_WEB_TRUST_REMOTE_CODE=1`.
Paths are resolved (symlinks and `..` followed) before they are compared, so neither escapes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.errors import SettingError, TlabError
from engine.paths import tlab_home
from engine.spec import BUNDLED_MODELS

ALLOWED_DIRS_ENV = "TLAB_WEB_ALLOWED_DIRS"
REMOTE_CODE_ENV = "TLAB_WEB_TRUST_REMOTE_CODE"
HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # org/name, as engine.models.loader reads it


class NotAllowed(TlabError):
    """Something the server's administrator has not allowed web users to do."""


@dataclass(frozen=True)
class WebPolicy:
    allowed_dirs: tuple[Path, ...]
    trust_remote_code: bool

    @classmethod
    def from_env(cls) -> WebPolicy:
        raw = os.environ.get(ALLOWED_DIRS_ENV, "")
        dirs = [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()] or [tlab_home()]
        for d in dirs:
            if not d.is_absolute():
                raise SettingError(f"{ALLOWED_DIRS_ENV} holds '{d}'; give absolute folder paths.")
        flag = os.environ.get(REMOTE_CODE_ENV, "0").strip().lower()
        if flag not in ("0", "1", "false", "true", "no", "yes", ""):
            raise SettingError(f"{REMOTE_CODE_ENV} must be 1 or 0, got '{flag}'.")
        return cls(tuple(d.resolve() for d in dirs), flag in ("1", "true", "yes"))

    def check_path(self, path: str | Path, what: str) -> Path:
        """The resolved path if it lies under an allowed folder; NotAllowed otherwise (saying nothing
        about whether it exists, so the app cannot be used to probe the disk)."""
        resolved = Path(path).expanduser().resolve()
        if any(resolved == d or d in resolved.parents for d in self.allowed_dirs):
            return resolved
        shown = ", ".join(str(d) for d in self.allowed_dirs)
        raise NotAllowed(f"The {what} '{path}' is outside the folders this server lets web users read "
                         f"({shown}). Upload the file instead, or ask the administrator to add its folder "
                         f"to {ALLOWED_DIRS_ENV}.")

    def check_remote_code(self, trust_remote_code: bool) -> None:
        if trust_remote_code and not self.trust_remote_code:
            raise NotAllowed("This server does not run models' own Python code (trust_remote_code) for web "
                             f"users; the administrator can allow it with {REMOTE_CODE_ENV}=1. Pick a model "
                             "that transformers supports natively.")

    def check_model(self, source: str, gguf_file: str | None, trust_remote_code: bool) -> None:
        """A model a web user names: bundled, a Hugging Face id, or a folder under an allowed one."""
        self.check_remote_code(trust_remote_code)
        if gguf_file is not None and (Path(gguf_file).name != gguf_file or gguf_file in ("..", ".")):
            raise NotAllowed(f"The GGUF file '{gguf_file}' must be a file name inside the model folder, "
                             "without a path.")
        if source in BUNDLED_MODELS or (HF_ID.match(source) and not Path(source).expanduser().exists()):
            return
        self.check_path(source, "model folder")

    def check_data(self, source: str) -> None:
        """Calibration text a web user names: bundled, hf:NAME[:CONFIG]:SPLIT, or a file under an allowed folder."""
        if source == "bundled" or source.startswith("hf:"):
            return
        self.check_path(source, "data file")


def check_web_sweep(model, data) -> None:
    """Refuse what a web user or a job row may not ask for (a ModelRef and a DataSpec)."""
    policy = WebPolicy.from_env()
    policy.check_model(model.source, model.gguf_file, model.trust_remote_code)
    policy.check_data(data.source)
