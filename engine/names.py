"""'Did you mean' help for registries (lm-evaluation-harness style)."""

import difflib
from collections.abc import Iterable

from engine.errors import UnknownNameError


def check_name(kind: str, name: str, valid: Iterable[str]) -> str:
    """Return `name` if valid, else raise an error listing close matches and all valid names."""
    valid = list(valid)
    if name in valid:
        return name
    if not isinstance(name, str):  # e.g. a list in a spec file: difflib would fail on it
        raise UnknownNameError(f"The {kind} must be a name (text), got {name!r:.60}. Valid {kind} names: "
                               f"{', '.join(valid)}.")
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(f"Unknown {kind} '{name}'.{hint} Valid {kind} names: {', '.join(valid)}.")
