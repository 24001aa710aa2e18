"""'Did you mean' help for registries (lm-evaluation-harness style)."""

import difflib
from collections.abc import Iterable

from engine.errors import UnknownNameError


def check_name(kind: str, name: str, valid: Iterable[str]) -> str:
    """Return `name` if valid, else raise an error listing close matches and all valid names."""
    valid = list(valid)
    if name in valid:
        return name
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"Unknown {kind} '{name}'.{hint} Valid {kind} names: {', '.join(valid)}.")
