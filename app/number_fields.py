"""Number fields whose every typed value reaches Python, and the check that Run queues what the form shows.

Why no min_value/max_value on st.number_input: Streamlit's frontend does not commit a typed value outside
them; the field keeps showing it (with a tooltip) while Python still holds the old one, so Run stayed enabled
and queued the old value (100000 calibration sequences ran as 32). Unbounded, every value the user commits
reaches the script, which checks the range here, says what to enter and keeps Run disabled.

Why the Run callback compares the fields again: a button's on_click args are those of the render before the
click, while a value typed and followed at once by a click is committed in the same rerun as the click. The
callback sees the committed values in st.session_state and refuses when they differ from the rendered ones.

A sweep estimated above an hour needs a ticked confirmation before Run is enabled (`long_run_label`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

STALE_MESSAGE = "A value changed as you clicked Run: check the fields and click Run again."


def range_problem(label: str, value: Any, low: float, high: float, whole: bool = True) -> str | None:
    """What is wrong with `value` for the field `label` (allowed: `low`..`high`, whole numbers if `whole`),
    or None when it is fine. Pure, so the page and the tests share it."""
    kind = "a whole number" if whole else "a number"
    allowed = f"Enter {kind} from {_fmt(low)} to {_fmt(high)}."
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{label}: {value!r} is not a number. {allowed}"
    if whole and value != int(value):
        return f"{label}: {_fmt(value)} is not a whole number. {allowed}"
    if not low <= value <= high:
        return f"{label}: {_fmt(value)} is out of range. {allowed}"
    return None


def number_field(container, label: str, key: str, default: int | float, low: float, high: float,
                 problems: list[str], step: int | float = 1, help: str | None = None) -> int | float | None:
    """An st.number_input without hard bounds (see the module's note) whose value is checked here:
    returns it, or None after adding the problem (which names the field and its range) to `problems`."""
    whole = isinstance(default, int)
    range_help = f"From {_fmt(low)} to {_fmt(high)}."
    value = container.number_input(label, value=default, step=step, key=key,
                                   help=f"{help} {range_help}" if help else range_help)
    problem = range_problem(label, value, low, high, whole)
    if problem:
        problems.append(problem)
        return None
    return int(value) if whole else float(value)


def comparable(value: Any) -> Any:
    """A widget value as something `==` compares meaningfully (an uploaded file by its upload id)."""
    if hasattr(value, "file_id"):
        return ("upload", value.file_id)
    if isinstance(value, (list, tuple)):
        return tuple(comparable(v) for v in value)
    return value


def snapshot(state: Mapping, keys: list[str]) -> dict[str, Any]:
    """The values of the form's widgets `keys` in `state` (st.session_state), as rendered."""
    return {k: comparable(state.get(k)) for k in keys}


def changed_fields(rendered: Mapping[str, Any], state: Mapping) -> list[str]:
    """Keys whose value in `state` (at click time) differs from the rendered snapshot. A key absent at click
    time belongs to a widget the render did not show (Streamlit drops those after the run, while the render
    may still have seen its old value), so it is not compared."""
    return [k for k, v in rendered.items() if k in state and comparable(state[k]) != v]


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,g}"


LONG_RUN_S = 3600.0  # beyond this the page asks for a confirmation before Run


def long_run_label(seconds: float) -> str | None:
    """The confirmation a sweep estimated above an hour needs before Run is enabled, or None."""
    if seconds <= LONG_RUN_S:
        return None
    return f"Run anyway: this sweep takes about {seconds / 3600:.1f} h"
